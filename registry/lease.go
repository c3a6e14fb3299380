package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// StoreLease is a Lease kept in the registry's store, for nodes that share
// one: the holder's id and expiry under L/{name}, taken in a transaction
// when it is free or expired, renewed by its holder. Clocks of the nodes
// must agree to well within the ttl.
type StoreLease struct {
	store kv.Store
	node  string
	now   func() time.Time
}

var _ Lease = (*StoreLease)(nil)

// NewStoreLease returns the lease of the named node on store; now is the
// clock (nil: time.Now).
func NewStoreLease(store kv.Store, node string, now func() time.Time) *StoreLease {
	if now == nil {
		now = time.Now
	}
	return &StoreLease{store: store, node: node, now: now}
}

type leaseRecord struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// Hold takes or renews the lease for ttl if it is free, expired or this
// node's, and reports whether this node holds it.
func (l *StoreLease) Hold(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	k := leaseKey(name)
	for attempt := 0; ; attempt++ {
		held := false
		err := l.store.Update(ctx, func(t kv.Txn) error {
			now := l.now()
			var cur leaseRecord
			switch v, err := t.Get(k); {
			case err == nil:
				if err := json.Unmarshal(v, &cur); err != nil {
					return fmt.Errorf("lease %s: corrupt record: %w", name, err)
				}
				if cur.Holder != l.node && now.Before(cur.Expires) {
					return nil // another node's, and live
				}
			case !errors.Is(err, kv.ErrNotFound):
				return err
			}
			b, err := json.Marshal(leaseRecord{Holder: l.node, Expires: now.Add(ttl)})
			if err != nil {
				return err
			}
			held = true
			return t.Set(k, b)
		})
		if errors.Is(err, kv.ErrConflict) && attempt < maxConflictRetries {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("lease %s: %w", name, err)
		}
		return held, nil
	}
}
