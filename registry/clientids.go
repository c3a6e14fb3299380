package registry

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// Preregistration-free one-product-one-secret (Alibaba "regnwl"): a device
// name that was never created registers with the product secret and gets
// a ClientID and a DeviceToken; up to Quotas.ClientIDsPerDevice physical
// devices may share one device name, each with its own pair. The operator
// can keep one of them (the others are refused from then on) or clear all.

// ClientID is one physical device's identity under a device name.
type ClientID struct {
	ClientID   string    `json:"client_id"`
	Token      string    `json:"-"`
	Sealed     []byte    `json:"token"`
	CreateTime time.Time `json:"create_time"`
}

// ErrClientIDRefused: the ClientID or DeviceToken is unknown, or the
// operator kept another ClientID or cleared them all.
var ErrClientIDRefused = errors.New("client id or device token refused")

func (r *Registry) sealClientIDs(d *Device) {
	for i := range d.ClientIDs {
		c := &d.ClientIDs[i]
		c.Sealed = r.seal.seal(c.Token, d.DeviceID+"/client/"+c.ClientID)
	}
}

func (r *Registry) openClientIDs(d *Device) error {
	for i := range d.ClientIDs {
		c := &d.ClientIDs[i]
		tok, err := r.seal.open(c.Sealed, d.DeviceID+"/client/"+c.ClientID)
		if err != nil {
			return fmt.Errorf("client id %s: %w", c.ClientID, err)
		}
		c.Token = tok
	}
	return nil
}

// RegisterClientID issues a ClientID and DeviceToken for a device name of
// a product with both Dynamic Registration and preregistration-free on,
// creating the device on first use. verify checks the caller's
// product-secret proof. Errors: NotFoundError (product), ErrSignature,
// ErrDynRegDisabled, ErrQuota (too many ClientIDs), ErrClientIDRefused
// (the operator kept one ClientID), ErrFrozen.
func (r *Registry) RegisterClientID(ctx context.Context, productID, nodeID string, verify func(*Product) bool) (*Device, ClientID, error) {
	p, err := r.ProductByID(ctx, productID)
	if err != nil {
		return nil, ClientID{}, err
	}
	if !verify(p) {
		return nil, ClientID{}, ErrSignature
	}
	if !p.DynamicRegistration || !p.PreregistrationFree {
		return nil, ClientID{}, ErrDynRegDisabled
	}
	if _, err := r.DeviceByProductNode(ctx, productID, nodeID); errors.Is(err, ErrNotFound) {
		_, err := r.CreateDevice(ctx, NewDevice{ProjectID: p.ProjectID, ProductID: productID, NodeID: nodeID,
			Auth: AuthInfo{SecureAccess: true}})
		if err != nil && !errors.Is(err, ErrAlreadyExists) {
			return nil, ClientID{}, err
		}
	} else if err != nil {
		return nil, ClientID{}, err
	}
	now := r.now().UTC()
	c := ClientID{ClientID: randomHex(16), Token: randomHex(16), CreateTime: now}
	var out *Device
	err = r.write(ctx, func(w Writer) error {
		id, err := w.Get(productNodeKey(productID, nodeID))
		if err != nil {
			return fmt.Errorf("device %s/%s: %w", productID, nodeID, err)
		}
		d, err := r.getDevice(w, string(id))
		if err != nil {
			return err
		}
		if d.Frozen {
			return ErrFrozen
		}
		if d.ClientIDKept {
			return fmt.Errorf("device %s keeps one physical device only: %w", d.DeviceID, ErrClientIDRefused)
		}
		if len(d.ClientIDs) >= r.quotas.ClientIDsPerDevice {
			return fmt.Errorf("device %s already has %d client ids: %w", d.DeviceID, len(d.ClientIDs), ErrQuota)
		}
		old := *d
		d.ClientIDs = append(append([]ClientID(nil), d.ClientIDs...), c)
		if err := r.putDevice(w, &old, d); err != nil {
			return err
		}
		out = d
		return nil
	})
	if err != nil {
		return nil, ClientID{}, err
	}
	r.fillStatus(out)
	return out, c, nil
}

// CheckClientToken authenticates a preregistration-free device by its
// ClientID and DeviceToken, in constant time over every ClientID.
func (r *Registry) CheckClientToken(ctx context.Context, productID, nodeID, clientID, token string) (*Device, error) {
	d, err := r.DeviceByProductNode(ctx, productID, nodeID)
	if err != nil {
		return nil, err
	}
	ok := 0
	for _, c := range d.ClientIDs {
		idOK := subtle.ConstantTimeCompare([]byte(c.ClientID), []byte(clientID))
		tokOK := subtle.ConstantTimeCompare([]byte(c.Token), []byte(token))
		ok |= idOK & tokOK
	}
	if ok != 1 {
		return nil, ErrClientIDRefused
	}
	return d, nil
}

// KeepClientID keeps one physical device (the Switch of the console): the
// other ClientIDs are refused from then on and no new ones are issued.
func (r *Registry) KeepClientID(ctx context.Context, project, deviceID, clientID string) (*Device, error) {
	d, err := r.mutateDevice(ctx, project, deviceID, func(d *Device) error {
		for _, c := range d.ClientIDs {
			if c.ClientID == clientID {
				d.ClientIDs = []ClientID{c}
				d.ClientIDKept = true
				return nil
			}
		}
		return &NotFoundError{Kind: EntityClientID, ID: clientID}
	})
	if err == nil {
		remote, isRemote := r.sessionElsewhere(ctx, deviceID)
		r.kickEverywhere(ctx, deviceID, "client id switched", remote, isRemote)
	}
	return d, err
}

// ClearClientIDs forbids every physical device of the device name (the
// Clear of the console); new ones may register afresh.
func (r *Registry) ClearClientIDs(ctx context.Context, project, deviceID string) (*Device, error) {
	d, err := r.mutateDevice(ctx, project, deviceID, func(d *Device) error {
		d.ClientIDs, d.ClientIDKept = nil, false
		return nil
	})
	if err == nil {
		remote, isRemote := r.sessionElsewhere(ctx, deviceID)
		r.kickEverywhere(ctx, deviceID, "client ids cleared", remote, isRemote)
	}
	return d, err
}
