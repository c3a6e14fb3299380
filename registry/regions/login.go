package regions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
)

// Login is an IoTDA-style MQTT credential, as a Huawei device presents
// it to an IoTDP bootstrap server: its device id, the ClientId's
// YYYYMMDDHH timestamp, and password = hex HMAC-SHA256(key = timestamp,
// message = secret). The adapter parses the ClientId (and checks a
// sign_type 1 timestamp's freshness); the region checks the password.
type Login struct {
	DeviceID  string `json:"deviceId"`
	Timestamp string `json:"timestamp"`
	Password  string `json:"password"`
}

// Validate checks the fields' shapes.
func (l Login) Validate() error {
	switch {
	case l.DeviceID == "" || len(l.DeviceID) > 128:
		return &ParamError{Param: "deviceId", Reason: "missing or too long"}
	case len(l.Timestamp) != 10:
		return &ParamError{Param: "timestamp", Reason: "not YYYYMMDDHH"}
	case len(l.Password) != hex.EncodedLen(sha256.Size):
		return &ParamError{Param: "password", Reason: "not hex HMAC-SHA256"}
	}
	return nil
}

// CheckLogin implements Region: the password must match one of the
// device's secrets.
func (l *Local) CheckLogin(ctx context.Context, in Login) (Held, error) {
	if err := in.Validate(); err != nil {
		return Held{}, err
	}
	mac, err := hex.DecodeString(in.Password)
	if err != nil {
		return Held{}, &ParamError{Param: "password", Reason: "not hex HMAC-SHA256"}
	}
	d, err := l.Registry.Device(ctx, in.DeviceID)
	if errors.Is(err, registry.ErrNotFound) {
		return Held{}, ErrUnknownDevice
	}
	if err != nil {
		return Held{}, fmt.Errorf("device lookup: %w", err)
	}
	if d.Auth.Type != registry.AuthSecret {
		return Held{}, ErrAuthType
	}
	if _, ok := d.MatchSecret(registry.HMACProof{Hash: sha256.New, Data: []byte(in.Timestamp)}, mac); !ok {
		return Held{}, ErrBadSign
	}
	return Held{ProjectID: d.ProjectID, DeviceID: d.DeviceID, ProductKey: d.ProductID, DeviceName: d.NodeID,
		Online: d.Status == registry.StatusOnline}, nil
}

// HuaweiBootstrap answers a Huawei IoTDP bootstrap: the address of the
// device's region. On first contact every region is asked to check the
// credential at once (only the one holding the device can), so the
// device is located and proven in one round; then it is assigned by the
// rules (by its product and the request's source) like an Alibaba
// device.
func (c *Centre) HuaweiBootstrap(ctx context.Context, src netip.Addr, l Login) (Endpoint, error) {
	if err := l.Validate(); err != nil {
		return Endpoint{}, err
	}
	e, err := c.dir.ByDeviceID(ctx, l.DeviceID)
	switch {
	case err == nil:
		r, ok := c.regions[e.Region]
		if !ok {
			return Endpoint{}, &RegionError{Region: e.Region, Err: ErrUnknownRegion}
		}
		_, err := r.Client.CheckLogin(ctx, l)
		if !errors.Is(err, ErrUnknownDevice) || e.From != "" {
			return r.Endpoint, err
		}
		if err := c.forget(ctx, e); err != nil {
			return Endpoint{}, err
		}
	case !errors.Is(err, kv.ErrNotFound):
		return Endpoint{}, fmt.Errorf("directory: %w", err)
	}
	holder, held, err := c.ask(ctx, func(r Region) (Held, error) { return r.CheckLogin(ctx, l) })
	if err != nil {
		return Endpoint{}, err
	}
	cur, err := c.assign(ctx, src, held.ProductKey, held.DeviceName, holder, held)
	if err != nil {
		return Endpoint{}, err
	}
	return c.regions[cur.Region].Endpoint, nil
}
