package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// BanStore is where the nodes of a cluster keep the ban list they share
// (the registry's store). Bans are normalized targets (as Local holds
// them); an expired ban is as good as absent.
type BanStore interface {
	// PutBan adds or replaces the ban of b.Target. An automatic ban never
	// replaces a manual one in force.
	PutBan(ctx context.Context, b Ban) error
	// DeleteBan lifts the ban of t; ErrNotBanned if there is none in
	// force.
	DeleteBan(ctx context.Context, t Target) error
	// ListBans lists the bans in force.
	ListBans(ctx context.Context) ([]Ban, error)
	// WatchBans has fn called when another node changed the list, and
	// when such notices may have been lost. fn must not block.
	WatchBans(fn func())
}

// SharedOptions tunes a Shared guard; zero fields take the defaults.
type SharedOptions struct {
	// Queue bounds the automatic bans waiting to be written to the store
	// (default 1024). Past it a ban is not shared (it still holds on this
	// node); the drops are counted and logged.
	Queue int
	// Resync is how often the list is reloaded from the store without a
	// notice, a safety net for a lost one (default one minute).
	Resync time.Duration
	// Retry is how soon a failed reload is retried (default one second).
	Retry  time.Duration
	Logger *slog.Logger
}

// Shared is the Guard of a node of a cluster: a Local whose ban list is
// kept in step with the store all nodes share. The checks are Local's,
// answered from this node's memory; counters of failures and connects
// stay per node, so a brute force a load balancer spreads over N nodes
// gets up to N times a node's threshold before its first ban, after
// which every node refuses it.
//
// Manual bans and their lifting are written to the store before they
// take effect here (a store error is the caller's). Automatic bans take
// effect here at once and are written by Run, in the background, from a
// bounded queue: the authentication path never waits on the store. When
// the store's list changes elsewhere (BanStore.WatchBans), at start and
// every Resync, Run reloads it and makes the local list match.
type Shared struct {
	*Local
	store  BanStore
	log    *slog.Logger
	resync time.Duration
	retry  time.Duration

	queue   chan Ban      // automatic bans to write
	changed chan struct{} // a reload is due (capacity 1: notices coalesce)

	// mu orders the writes to the store with the reloads, so that a
	// reload never lifts a ban written after its listing was taken.
	mu sync.Mutex

	dropped  atomic.Uint64 // automatic bans not shared: the queue was full
	dropLog  *Throttle
	writeLog *Throttle
}

var _ Guard = (*Shared)(nil)

// NewShared returns a guard with cfg's limits whose ban list is shared
// through store. Call Run to start sharing.
func NewShared(cfg Config, store BanStore, o SharedOptions) *Shared {
	if o.Queue <= 0 {
		o.Queue = 1024
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Shared{Local: NewLocal(cfg), store: store, log: o.Logger, resync: o.Resync, retry: o.Retry,
		queue: make(chan Ban, o.Queue), changed: make(chan struct{}, 1),
		dropLog: NewThrottle(1, 1), writeLog: NewThrottle(1, 1)}
	g.Local.onAuto = g.enqueue
	store.WatchBans(g.notify)
	return g
}

// Dropped counts the automatic bans that were not shared because the
// queue was full.
func (g *Shared) Dropped() uint64 { return g.dropped.Load() }

func (g *Shared) notify() {
	select {
	case g.changed <- struct{}{}:
	default: // a reload is due already
	}
}

// enqueue queues an automatic ban for the store, never waiting.
func (g *Shared) enqueue(b Ban) {
	select {
	case g.queue <- b:
	default:
		n := g.dropped.Add(1)
		if ok, _ := g.dropLog.Allow(); ok {
			g.log.Warn("automatic ban not shared with the other nodes: write queue full; it holds on this node",
				"target", b.Target.String(), "dropped_total", n)
		}
	}
}

// Run shares the ban list until ctx ends: it loads the store's list at
// once, writes automatic bans as they come and reloads the list when it
// changes elsewhere.
func (g *Shared) Run(ctx context.Context) error {
	resync := time.NewTicker(g.resync)
	defer resync.Stop()
	var retry <-chan time.Time
	reload := func() {
		retry = nil
		if err := g.Reload(ctx); err != nil && ctx.Err() == nil {
			g.log.Error("ban list not reloaded from the store; retrying", "err", err)
			retry = time.After(g.retry)
		}
	}
	reload()
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-g.queue:
			g.write(ctx, b)
		case <-g.changed:
			reload()
		case <-resync.C:
			reload()
		case <-retry:
			reload()
		}
	}
}

// write stores the automatic ban b, unless it was lifted or replaced
// here meanwhile, and marks it shared.
func (g *Shared) write(ctx context.Context, b Ban) {
	e := entryOf(b)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.bans.holds(b.Target, e) {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := g.store.PutBan(wctx, b); err != nil {
		if ok, suppressed := g.writeLog.Allow(); ok && ctx.Err() == nil {
			g.log.Error("automatic ban not shared with the other nodes; it holds on this node",
				"target", b.Target.String(), "err", err, "suppressed", suppressed)
		}
		return
	}
	g.bans.markShared(b.Target, e)
}

// Reload makes the local list match the store's: bans added or changed
// elsewhere are added, bans lifted elsewhere are lifted, and automatic
// bans of this node not yet written stay.
func (g *Shared) Reload(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	bans, err := g.store.ListBans(ctx)
	if err != nil {
		return fmt.Errorf("guard: list bans: %w", err)
	}
	res := g.bans.sync(bans, g.now().UnixNano())
	if res.Refused > 0 {
		g.log.Warn("stored bans not held on this node: its ban list is full (limits.max_bans, limits.max_manual_bans)",
			"refused", res.Refused)
	}
	if res.Added+res.Replaced+res.Lifted > 0 {
		g.log.Debug("ban list reloaded", "added", res.Added, "replaced", res.Replaced, "lifted", res.Lifted)
	}
	return nil
}

// Ban writes b to the store as a manual ban, then holds it here.
func (g *Shared) Ban(ctx context.Context, b Ban) error {
	t, err := normalize(b.Target)
	if err != nil {
		return err
	}
	now := g.now()
	if !b.Expires.IsZero() && !b.Expires.After(now) {
		return &InvalidBanError{Field: "expires", Problem: "is not in the future"}
	}
	b = Ban{Target: t, Reason: b.Reason, Source: SourceManual, Created: now.UTC(), Expires: b.Expires}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.bans.room(t, now.UnixNano()); err != nil {
		return err
	}
	if err := g.store.PutBan(ctx, b); err != nil {
		return fmt.Errorf("guard: store ban: %w", err)
	}
	_, err = g.bans.put(t, entryOf(b), now.UnixNano())
	return err
}

// Unban lifts t's ban in the store, then here. A ban held only here (an
// automatic one not yet shared) is lifted too.
func (g *Shared) Unban(ctx context.Context, t Target) error {
	t, err := normalize(t)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	stored := g.store.DeleteBan(ctx, t)
	if stored != nil && !errors.Is(stored, ErrNotBanned) {
		return fmt.Errorf("guard: lift ban: %w", stored)
	}
	local := g.bans.remove(t, g.now().UnixNano())
	if stored == nil {
		return nil
	}
	return local
}
