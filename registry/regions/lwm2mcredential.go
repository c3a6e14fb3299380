package regions

import (
	"context"
	"sync"
)

// LwM2MCredential returns the bootstrap credential of the device an
// LwM2M PSK identity names, for the DTLS handshake of the centre's
// LwM2M Bootstrap server: the device's account (with its secret, whose
// registry.PSK is the key) as a region holding it describes it. It
// assigns nothing: the handshake does not know the device's source
// address, which the assignment rules need; the Bootstrap-Request on the
// session then goes through LwM2MBootstrap. ErrUnknownDevice when no
// region holds the identity.
func (c *Centre) LwM2MCredential(ctx context.Context, identity string) (LwM2MAccount, error) {
	if identity == "" || len(identity) > maxKeyLen {
		return LwM2MAccount{}, &ParamError{Param: "psk identity", Reason: "missing or too long"}
	}
	var mu sync.Mutex
	accounts := map[Region]LwM2MAccount{}
	holder, _, err := c.ask(ctx, func(r Region) (Held, error) {
		a, err := r.LwM2MDevice(ctx, identity)
		if err == nil {
			mu.Lock()
			accounts[r] = a
			mu.Unlock()
		}
		return a.Held, err
	})
	if err != nil {
		return LwM2MAccount{}, err
	}
	// During a move both regions hold the device, with one id and secret
	// (Import keeps them): either copy is its credential.
	return accounts[c.regions[holder].Client], nil
}
