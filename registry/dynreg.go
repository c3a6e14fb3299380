package registry

import (
	"context"
	"crypto/subtle"
	"errors"

	"github.com/iotgate/iotgate/registry/kv"
)

// Dynamic registration (Alibaba's one-product-one-secret): every device of
// a product carries the same product secret and proves it with an HMAC
// over its device name; in exchange the platform hands it its own device
// secret, once.

// Dynamic-registration refusals; adapters map them to Alibaba's codes.
var (
	// ErrDynRegDisabled: the product's Dynamic Registration switch is off (6288).
	ErrDynRegDisabled = errors.New("dynamic registration is not enabled for the product")
	// ErrSignature: the product-secret proof is wrong (6600).
	ErrSignature = errors.New("signature check failed")
	// ErrAlreadyActive: the device secret was delivered already, or the
	// device has been active, so it is not handed out again (6289).
	ErrAlreadyActive = errors.New("device is already active")
)

// MatchProductSecret reports whether mac is the HMAC p describes over the
// product secret, in constant time.
func (p *Product) MatchProductSecret(proof HMACProof, mac []byte) bool {
	if p.ProductSecret == "" {
		return false
	}
	return subtle.ConstantTimeCompare(proof.sum(p.ProductSecret), mac) == 1
}

// registrationOpen reports whether a pre-registered device may still
// receive its secret by dynamic registration.
func (d *Device) registrationOpen() bool {
	switch d.DynReg {
	case "reset":
		return true
	case "":
		return d.ActiveTime.IsZero()
	}
	return false
}

// DynamicRegister delivers a pre-registered device's secret to the caller
// that proved knowledge of its product's secret. verify checks that proof
// against the product. The delivery is recorded in the same durable write
// that reads the secret, so two racing registrations cannot both get it.
// Errors: NotFoundError for the product or device, ErrSignature,
// ErrDynRegDisabled, ErrAlreadyActive.
func (r *Registry) DynamicRegister(ctx context.Context, productID, nodeID string, verify func(*Product) bool) (*Device, error) {
	p, err := r.ProductByID(ctx, productID)
	if err != nil {
		return nil, err
	}
	// The proof comes first, so nobody without the product secret learns
	// anything about the product's switches or devices.
	if !verify(p) {
		return nil, ErrSignature
	}
	if !p.DynamicRegistration {
		return nil, ErrDynRegDisabled
	}
	var out *Device
	err = r.write(ctx, func(w Writer) error {
		id, err := w.Get(productNodeKey(productID, nodeID))
		if errors.Is(err, kv.ErrNotFound) {
			return &NotFoundError{Kind: EntityDevice, ID: productID + "/" + nodeID}
		}
		if err != nil {
			return err
		}
		d, err := r.getDevice(w, string(id))
		if err != nil {
			return err
		}
		if d.Frozen {
			return ErrFrozen
		}
		if !d.registrationOpen() || d.Auth.Type != AuthSecret {
			return ErrAlreadyActive
		}
		old := *d
		d.DynReg = "delivered"
		if err := r.putDevice(w, &old, d); err != nil {
			return err
		}
		out = d
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.fillStatus(out)
	return out, nil
}

// ResetThing returns a device to "not yet registered" so that a device
// that lost its secret can register again. The secret does not change and
// the activation history stays.
func (r *Registry) ResetThing(ctx context.Context, project, id string) (*Device, error) {
	return r.mutateDevice(ctx, project, id, func(d *Device) error {
		d.DynReg = "reset"
		return nil
	})
}
