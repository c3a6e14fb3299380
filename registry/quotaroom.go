package registry

import (
	"context"
	"sync"
	"time"
)

// quotaRoom spares most creates the exact count of their product's
// devices inside their transaction: the count is spread over shards (see
// addCount), and summing them there would make every create scan keys
// beside the other writes of its batch. A create far from the product's
// quota, by a recent count read outside the transaction, cannot reach it
// whatever else commits meanwhile; only creates within quotaMargin of it
// count exactly in their transaction.
type quotaRoom struct {
	mu sync.Mutex
	m  map[string]roomCount
}

type roomCount struct {
	n  int64
	at time.Time
}

// quotaRoomFresh is how long a count read outside a transaction is used.
const quotaRoomFresh = time.Second

// quotaMargin is how far from its quota a product must be for creates to
// skip the exact count: more than the devices a whole cluster creates in
// quotaRoomFresh.
func quotaMargin(quota int64) int64 { return max(quota/10, 10_000) }

// maxRoomEntries bounds the products remembered.
const maxRoomEntries = 1 << 16

// mustCount reports whether a create of a device of product must count
// the product's devices exactly in its transaction.
func (r *Registry) mustCount(ctx context.Context, product string) bool {
	quota := r.quotas.DevicesPerProduct
	now := r.now()
	r.room.mu.Lock()
	c, ok := r.room.m[product]
	r.room.mu.Unlock()
	if !ok || now.Sub(c.at) > quotaRoomFresh || now.Before(c.at) {
		var n int64
		err := r.view(ctx, func(rd Reader) error {
			var err error
			n, err = readCount(rd, productCountKey(product))
			return err
		})
		if err != nil {
			return true
		}
		c = roomCount{n: n, at: now}
		r.room.mu.Lock()
		if r.room.m == nil || len(r.room.m) >= maxRoomEntries {
			r.room.m = make(map[string]roomCount)
		}
		r.room.m[product] = c
		r.room.mu.Unlock()
	}
	return c.n >= quota-quotaMargin(quota)
}
