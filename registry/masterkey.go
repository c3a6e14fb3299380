package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry/kv"
)

// ErrMasterKeyMismatch: the store's secrets were sealed with another
// master key than this node's. Every node of a cluster must share one
// (its secrets would not open, and those it sealed would not open on the
// others), so such a node must not start.
var ErrMasterKeyMismatch = errors.New("the master key differs from the one the store's secrets were sealed with (every node must use the same master_key)")

// keyCheckText is what the key-check record seals; opening it proves the
// key (AES-GCM authenticates), the text itself is no secret.
const keyCheckText = "iotgate master key check"

// keyCheckAD binds the sealed check to its record.
const keyCheckAD = "key-check"

// keyCheckSample bounds how many device records a store without a check
// record (one written before the check existed) is searched for a sealed
// secret to try the key on.
const keyCheckSample = 256

// CheckMasterKey verifies that this node's master key is the one the
// store's secrets are sealed with: it opens the sealed check record
// (K/master), writing it on the store's first start. A store without one
// that already holds devices (from a version before the check) is tried
// on the first device secret found among its first records before the
// record is written. It fails with ErrMasterKeyMismatch when the key is
// not the store's.
func (r *Registry) CheckMasterKey(ctx context.Context) error {
	k := keyCheckKey()
	// A restart reads the record: it must work on a full disk too.
	found := false
	err := r.view(ctx, func(rd Reader) error {
		v, err := rd.Get(k)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("read the master key check: %w", err)
		}
		found = true
		if _, err := r.seal.open(v, keyCheckAD); err != nil {
			return ErrMasterKeyMismatch
		}
		return nil
	})
	if err != nil || found {
		return err
	}
	err = r.write(ctx, func(w Writer) error {
		v, err := w.Get(k)
		switch {
		case err == nil: // another node wrote it meanwhile
			if _, err := r.seal.open(v, keyCheckAD); err != nil {
				return ErrMasterKeyMismatch
			}
			return nil
		case !errors.Is(err, kv.ErrNotFound):
			return fmt.Errorf("read the master key check: %w", err)
		}
		if err := r.checkKeyOnDevices(w); err != nil {
			return err
		}
		return w.Set(k, r.seal.seal(keyCheckText, keyCheckAD))
	})
	if errors.Is(err, ErrStorageFull) {
		// The record waits for a start with room for it; the key is
		// tried on the devices' secrets meanwhile.
		r.log.Warn("master key check not recorded: storage full; checked against device secrets only")
		return r.view(ctx, r.checkKeyOnDevices)
	}
	return err
}

// checkKeyOnDevices opens the first sealed device secret among the
// first keyCheckSample device records, if there is one.
func (r *Registry) checkKeyOnDevices(rd Reader) error {
	n := 0
	var mismatch error
	err := rd.Scan(prefixKey(famDevice), nil, false, func(k, v []byte) (bool, error) {
		n++
		id := string(k[len(famDevice)+1:])
		_, secret, _, err := decodeSealedDevice(id, v)
		if err != nil || len(secret) == 0 {
			return n < keyCheckSample, nil
		}
		if _, err := r.seal.open(secret, id+"/secret"); err != nil {
			mismatch = ErrMasterKeyMismatch
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("read devices for the master key check: %w", err)
	}
	return mismatch
}
