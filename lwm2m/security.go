package lwm2m

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"

	"github.com/iotgate/iotgate/registry"
)

// SecurityStore tells the server who a client claims to be: it resolves an
// LwM2M endpoint name (or a PSK identity, which is the same name) to the
// device that owns it. A *registry.Registry-backed store is the only
// production one; tests may substitute their own.
type SecurityStore interface {
	// DeviceByEndpoint returns the device whose node_id the endpoint
	// names, or an error wrapping registry.ErrNotFound.
	DeviceByEndpoint(ctx context.Context, endpoint string) (*registry.Device, error)
}

// NodeFinder is the registry lookup the registry-backed security store
// needs.
type NodeFinder interface {
	DeviceByNodeID(ctx context.Context, nodeID string) (*registry.Device, error)
}

// RegistrySecurity is the SecurityStore over the registry's platform-wide
// node index of CoAP products.
type RegistrySecurity struct{ Registry NodeFinder }

const imeiPrefix = "urn:imei:"

// DeviceByEndpoint resolves an endpoint name. Names of the form
// urn:imei:<digits> (Qualcomm-chip modules) match a device whose node_id is
// the whole name or just the digits (HiSilicon modules send those).
func (s RegistrySecurity) DeviceByEndpoint(ctx context.Context, endpoint string) (*registry.Device, error) {
	if endpoint == "" {
		return nil, &registry.NotFoundError{Kind: registry.EntityNode, ID: endpoint}
	}
	d, err := s.Registry.DeviceByNodeID(ctx, endpoint)
	if err == nil || !errors.Is(err, registry.ErrNotFound) {
		return d, err
	}
	if digits, ok := imeiDigits(endpoint); ok {
		return s.Registry.DeviceByNodeID(ctx, digits)
	}
	return nil, err
}

// imeiDigits returns the digits of a urn:imei: name.
func imeiDigits(endpoint string) (string, bool) {
	if len(endpoint) <= len(imeiPrefix) || !strings.EqualFold(endpoint[:len(imeiPrefix)], imeiPrefix) {
		return "", false
	}
	digits := endpoint[len(imeiPrefix):]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return "", false
		}
	}
	return digits, true
}

// PSK returns the DTLS pre-shared key of a device secret
// (registry.PSK).
func PSK(secret string) []byte { return registry.PSK(secret) }

// pskLookup answers pion's PSK callback: the primary secret of the device
// the identity names (IoTDA does not honour the secondary one for CoAP).
// An unknown identity gets a random key instead of an error, so that it
// fails at the same step of the handshake as a wrong key and a scanner
// cannot tell which node ids exist.
func pskLookup(ctx context.Context, sec SecurityStore, identity []byte) ([]byte, error) {
	d, err := sec.DeviceByEndpoint(ctx, string(identity))
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return nil, err
	}
	if err != nil || d.Auth.Type != registry.AuthSecret || d.Auth.Secret == "" {
		k := make([]byte, 16)
		_, _ = rand.Read(k)
		return k, nil
	}
	return PSK(d.Auth.Secret), nil
}
