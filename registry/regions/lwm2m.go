package regions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
)

// LwM2MAccount is an LwM2M device as the region holding it describes it
// to the centre for an LwM2M bootstrap: the device, and the secret the
// bootstrap server writes into its Security object as the PSK (empty:
// the device has none and registers over NoSec). It carries a secret,
// like Transfer: memory and the authenticated wire only.
type LwM2MAccount struct {
	Held
	Secret       string `json:"secret,omitempty"`
	SecureAccess bool   `json:"secureAccess,omitempty"`
}

// EndpointResolver resolves an LwM2M endpoint name to the device it
// names, as the region's LwM2M server does (lwm2m.RegistrySecurity), so
// that the bootstrap server and the region agree on who a name is.
type EndpointResolver interface {
	DeviceByEndpoint(ctx context.Context, endpoint string) (*registry.Device, error)
}

// LwM2MDevice implements Region.
func (l *Local) LwM2MDevice(ctx context.Context, endpoint string) (LwM2MAccount, error) {
	if l.Endpoints == nil {
		return LwM2MAccount{}, ErrUnknownDevice
	}
	d, err := l.Endpoints.DeviceByEndpoint(ctx, endpoint)
	if errors.Is(err, registry.ErrNotFound) {
		return LwM2MAccount{}, ErrUnknownDevice
	}
	if err != nil {
		return LwM2MAccount{}, fmt.Errorf("endpoint lookup: %w", err)
	}
	a := LwM2MAccount{Held: Held{ProjectID: d.ProjectID, DeviceID: d.DeviceID, ProductKey: d.ProductID,
		DeviceName: d.NodeID}, SecureAccess: d.Auth.SecureAccess}
	if d.Auth.Type == registry.AuthSecret {
		a.Secret = d.Auth.Secret // the primary: IoTDA's CoAP honours only it
	}
	return a, nil
}

// LwM2MBootstrap answers an LwM2M Bootstrap-Request for endpoint from
// src: the device's account (with its secret) as its assigned region
// holds it, and that region's endpoint. On first contact every region is
// asked at once which holds the device; it is then assigned by the rules
// (source address, product) like any other first contact.
func (c *Centre) LwM2MBootstrap(ctx context.Context, src netip.Addr, endpoint string) (LwM2MAccount, Endpoint, error) {
	if endpoint == "" || len(endpoint) > maxKeyLen {
		return LwM2MAccount{}, Endpoint{}, &ParamError{Param: "ep", Reason: "missing or too long"}
	}
	var mu sync.Mutex
	accounts := map[Region]LwM2MAccount{}
	holder, held, err := c.ask(ctx, func(r Region) (Held, error) {
		a, err := r.LwM2MDevice(ctx, endpoint)
		if err == nil {
			mu.Lock()
			accounts[r] = a
			mu.Unlock()
		}
		return a.Held, err
	})
	if err != nil {
		return LwM2MAccount{}, Endpoint{}, err
	}
	for retried := false; ; retried = true {
		e, err := c.dir.Get(ctx, held.ProductKey, held.DeviceName)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			if e, err = c.assign(ctx, src, held.ProductKey, held.DeviceName, holder, held); err != nil {
				return LwM2MAccount{}, Endpoint{}, err
			}
		case err != nil:
			return LwM2MAccount{}, Endpoint{}, fmt.Errorf("directory: %w", err)
		}
		r, ok := c.regions[e.Region]
		if !ok {
			return LwM2MAccount{}, Endpoint{}, &RegionError{Region: e.Region, Err: ErrUnknownRegion}
		}
		if a, ok := accounts[r.Client]; ok {
			return a, r.Endpoint, nil
		}
		// Transferred just now, or a move under way, or assigned to a
		// region that no longer holds it: the assigned region's copy is
		// the one the device will register with.
		a, err := r.Client.LwM2MDevice(ctx, endpoint)
		if errors.Is(err, ErrUnknownDevice) && e.From == "" && !retried {
			// Deleted there by its operator (another region holds one of
			// that name): assigned afresh.
			if err := c.forget(ctx, e); err != nil {
				return LwM2MAccount{}, Endpoint{}, err
			}
			continue
		}
		if err != nil {
			return LwM2MAccount{}, Endpoint{}, &RegionError{Region: e.Region, Err: err}
		}
		return a, r.Endpoint, nil
	}
}
