// Package fdbudget keeps accepted connections from taking the file
// descriptors the rest of the process needs. The process's descriptor
// limit, less a reserve for the store, the logs and outgoing connections
// (forwarding, the PostgreSQL pool, NATS), is a Budget; each group of
// listeners draws on it through a Pool with a cap of its own, so a flood
// on one group cannot starve another. A connection accepted over its
// pool's cap or the budget is closed at once, counted and logged (at a
// bounded rate): a flood of sockets from the Internet ends in refused
// connections, never in a store that cannot open its next file.
package fdbudget

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/iotgate/iotgate/registry/guard"
)

// Budget is the number of descriptors accepted connections may hold at
// once, shared by its pools. It is safe for concurrent use.
type Budget struct {
	limit int64
	open  atomic.Int64
	logs  *guard.Throttle
	log   *slog.Logger

	mu    sync.Mutex
	pools []*Pool
}

// New is a budget of limit descriptors (at least 0). Refusals are
// logged to log at info through throttle (nil: every one); a nil log
// writes none.
func New(limit int, log *slog.Logger, throttle *guard.Throttle) *Budget {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if throttle == nil {
		throttle = guard.NewThrottle(0, 0)
	}
	return &Budget{limit: int64(max(limit, 0)), log: log, logs: throttle}
}

// Limit is the budget's size.
func (b *Budget) Limit() int { return int(b.limit) }

// Open is the number of descriptors its pools hold now.
func (b *Budget) Open() int { return int(b.open.Load()) }

// Pool is a share of b named name (it names the pool in logs and
// metrics) that holds at most limit descriptors; limit is capped at the
// budget's. Pools whose limits add up to the budget partition it; more,
// and they share what is left of it.
func (b *Budget) Pool(name string, limit int) *Pool {
	p := &Pool{name: name, budget: b, limit: min(int64(max(limit, 0)), b.limit)}
	b.mu.Lock()
	b.pools = append(b.pools, p)
	b.mu.Unlock()
	return p
}

// Stats are a pool's figures.
type Stats struct {
	Pool string
	// Limit is the pool's cap; Open the connections it holds now.
	Limit, Open int
	// Refused counts the connections closed at accept because the pool
	// or the budget was spent.
	Refused uint64
}

// Stats reads every pool's figures, in the order they were made.
func (b *Budget) Stats() []Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Stats, len(b.pools))
	for i, p := range b.pools {
		out[i] = p.Stats()
	}
	return out
}

// Pool is one group of listeners' share of a Budget.
type Pool struct {
	name    string
	budget  *Budget
	limit   int64
	open    atomic.Int64
	refused atomic.Uint64
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.name }

// Stats reads the pool's figures.
func (p *Pool) Stats() Stats {
	return Stats{Pool: p.name, Limit: int(p.limit), Open: int(p.open.Load()), Refused: p.refused.Load()}
}

// TryAcquire takes a descriptor from the pool and the budget; it
// reports false, taking nothing, when either is spent. Each true must
// be matched by one Release.
func (p *Pool) TryAcquire() bool { return p.acquire() == "" }

// acquire is TryAcquire that names what was spent: "" (nothing, a
// descriptor was taken), "pool" or "budget".
func (p *Pool) acquire() string {
	if !take(&p.open, p.limit) {
		return "pool"
	}
	if !take(&p.budget.open, p.budget.limit) {
		p.open.Add(-1)
		return "budget"
	}
	return ""
}

// Release gives back a descriptor TryAcquire took.
func (p *Pool) Release() {
	p.budget.open.Add(-1)
	p.open.Add(-1)
}

// take adds one to n unless that would pass limit. A compare-and-swap
// rather than an add that is undone: two callers racing for the last
// descriptor must not both be refused.
func take(n *atomic.Int64, limit int64) bool {
	for {
		v := n.Load()
		if v >= limit {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}
