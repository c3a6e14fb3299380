// Package registry is iotgate's domain: projects, products, devices, their
// credentials, connection status and unconnected-registration expiry. It
// knows no network protocol; the REST API and the LwM2M and MQTT listeners
// are adapters that call it.
//
// Storage is behind registry/kv: the domain writes through Registry.write,
// which runs a write's checks and changes in one kv transaction, re-runs
// it when the engine reports a conflict, and keeps the node's cache in
// step once it has committed. State that belongs to one node (presence,
// the cache and its invalidation, id generation, the sweeps' lease) is
// named in node.go behind interfaces, so a cluster is a wiring change.
//
// Every change a consumer may care about is also recorded, in the same
// transaction, as an event in a durable stream that named consumers read
// in order and acknowledge (events.go, eventstream.go). Stream positions
// come from a node-local counter on one node, from a counter in the store
// on a cluster (eventstream.go).
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Options configures a Registry.
type Options struct {
	Store     kv.Store
	MasterKey []byte // 32 bytes; seals secrets at rest
	Logger    *slog.Logger
	// SweepInterval is how often expired unconnected devices are deleted.
	// Zero means one second.
	SweepInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CacheEntries bounds the in-memory cache of device records and index
	// entries. Zero means 4194304 (about a million devices, 3-4 entries each); negative disables the cache.
	CacheEntries int
	// CacheMaxAge bounds how long a cached record is trusted without a
	// store read: on a cluster, a lost invalidation costs at most this
	// much staleness. Zero means 10 minutes.
	CacheMaxAge time.Duration
	// Quotas; zero fields take DefaultQuotas' values.
	Quotas Quotas
	// Events bounds the event backlog.
	Events EventOptions

	// Node names this node in a cluster ("" on a single node).
	Node string
	// Node-local state (see node.go); nil fields take the single node's
	// in-memory implementations, except Presence on a named node, which
	// is kept in the store (StorePresence).
	Presence    Presence
	Invalidator Invalidator // nil: no other node to tell
	// EventHints tells the other nodes which projects' events this
	// node's writes committed, and them this node's (nil: no other node
	// to tell; their readers poll).
	EventHints EventHinter
	IDs        IDGenerator
	Lease      Lease
	// Link carries requests to the node holding a device's session
	// (nil: a single node, every session is this process's). New has it
	// serve the other nodes' requests.
	Link NodeLink
}

// Quotas bound what one product or gateway may hold. Over quota, a write
// is refused with ErrQuota and changes nothing.
type Quotas struct {
	DevicesPerProduct    int64 // devices of one product
	SubDevicesPerGateway int64 // sub-devices attached to one gateway
	// ClientIDsPerDevice bounds the physical devices (ClientIDs) sharing
	// one device name in preregistration-free mode.
	ClientIDsPerDevice int
	// SubDevicesPerRequest bounds one sub-device registration request.
	SubDevicesPerRequest int
	// Static device groups (groups.go): groups of one project, sub-groups
	// included; devices of one group; groups one device belongs to; levels
	// of nesting (a group without a super group is level 1).
	GroupsPerProject int64
	DevicesPerGroup  int64
	GroupsPerDevice  int
	GroupDepth       int
}

// DefaultQuotas are the figures of the product documentation the project
// started from.
var DefaultQuotas = Quotas{DevicesPerProduct: 500_000, SubDevicesPerGateway: 1_500, ClientIDsPerDevice: 5, SubDevicesPerRequest: 30,
	GroupsPerProject: 1_000, DevicesPerGroup: 20_000, GroupsPerDevice: 10, GroupDepth: 5}

func (q Quotas) withDefaults() Quotas {
	if q.DevicesPerProduct <= 0 {
		q.DevicesPerProduct = DefaultQuotas.DevicesPerProduct
	}
	if q.SubDevicesPerGateway <= 0 {
		q.SubDevicesPerGateway = DefaultQuotas.SubDevicesPerGateway
	}
	if q.ClientIDsPerDevice <= 0 {
		q.ClientIDsPerDevice = DefaultQuotas.ClientIDsPerDevice
	}
	if q.SubDevicesPerRequest <= 0 {
		q.SubDevicesPerRequest = DefaultQuotas.SubDevicesPerRequest
	}
	if q.GroupsPerProject <= 0 {
		q.GroupsPerProject = DefaultQuotas.GroupsPerProject
	}
	if q.DevicesPerGroup <= 0 {
		q.DevicesPerGroup = DefaultQuotas.DevicesPerGroup
	}
	if q.GroupsPerDevice <= 0 {
		q.GroupsPerDevice = DefaultQuotas.GroupsPerDevice
	}
	if q.GroupDepth <= 0 {
		q.GroupDepth = DefaultQuotas.GroupDepth
	}
	return q
}

// Registry is safe for concurrent use.
type Registry struct {
	store    kv.Store
	seal     *sealer
	log      *slog.Logger
	now      func() time.Time
	ids      IDGenerator
	sweepInt time.Duration
	quotas   Quotas

	cache  *cache // nil when disabled
	closed atomic.Bool

	node       string // this node's id ("" on a single node)
	countShard byte   // the shard of shared counters this node writes
	presence   Presence
	inval      Invalidator // nil on a single node
	hints      EventHinter // nil on a single node
	link       NodeLink    // nil on a single node
	lease      Lease
	statusMu   sync.Mutex
	statusQ    map[string]statusTime // device_id -> status change to persist

	kickMu  sync.RWMutex
	kickers []Kicker

	pending *pendingHint // devices that may have PENDING async commands
	room    quotaRoom    // recent device counts of products (see mustCount)
	writing writingDevices

	router   *Router         // delivers applications' requests to devices
	commands commandCounters // commands ended, by kind and status (commandstats.go)

	events *eventLog // the durable event stream's node state
	// eventSignal wakes the stream's readers when a write that recorded
	// events has committed.
	eventSignal eventSignal
	// relay moves a cluster's outbox into the streams (eventrelay.go).
	relay *eventRelay

	fw firmwareHooks // firmware upgrades' deliverer and done callbacks (firmwareupgrades.go)

	keys *keyFilter // the keys a create checks, on a single node (keyfilter.go)

	beat    atomic.Pointer[NodeInfo] // a single node's last heartbeat (nodes.go)
	members membership               // a cluster's, read with heartbeats (liveness.go)

	banMu       sync.Mutex
	banWatchers []func()     // told when the shared ban list changed (bans.go)
	banSwept    atomic.Int64 // when expired bans were last swept (unix ns)
}

// Kicker is implemented by listeners that hold device sessions; the
// registry asks them to drop a device's session when it is frozen,
// deleted, or its credentials are reset with force_disconnect.
type Kicker interface {
	Kick(deviceID, reason string)
}

// New starts a registry over an open store. Call Run to start expiry
// sweeping and Close to stop it.
func New(o Options) (*Registry, error) {
	if o.Store == nil {
		return nil, errors.New("registry: no store")
	}
	s, err := newSealer(o.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registry{
		store:      o.Store,
		seal:       s,
		log:        o.Logger,
		now:        o.Now,
		sweepInt:   o.SweepInterval,
		quotas:     o.Quotas.withDefaults(),
		node:       o.Node,
		countShard: counterShardOf(o.Node),
		presence:   o.Presence,
		inval:      o.Invalidator,
		hints:      o.EventHints,
		link:       o.Link,
		ids:        o.IDs,
		lease:      o.Lease,
		statusQ:    make(map[string]statusTime),
		pending:    newPendingHint(),
		relay:      newEventRelay(),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.sweepInt <= 0 {
		r.sweepInt = time.Second
	}
	switch {
	case r.presence != nil:
	case o.Node != "":
		r.presence = NewStorePresence(o.Store, o.Node)
	default:
		r.presence = NewLocalPresence(o.Node, r.now())
	}
	if r.ids == nil {
		r.ids = NewNodeIDs(o.Node, r.now())
	}
	if r.lease == nil {
		r.lease = LocalLease{}
	}
	maxAge := o.CacheMaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Minute
	}
	switch {
	case o.CacheEntries == 0:
		r.cache = newCache(1<<22, maxAge, r.now())
	case o.CacheEntries > 0:
		r.cache = newCache(o.CacheEntries, maxAge, r.now())
	}
	// The router first: a notice may arrive as soon as we subscribe.
	r.router = newRouter(r)
	if r.hints != nil {
		r.hints.SubscribeEventHints(r.eventsHinted)
	}
	if r.inval != nil {
		r.inval.Subscribe(r.invalidated)
	}
	if err := r.loadPendingHint(context.Background()); err != nil {
		return nil, fmt.Errorf("registry: pending commands: %w", err)
	}
	if err := r.router.loadHeld(context.Background()); err != nil {
		return nil, fmt.Errorf("registry: held messages: %w", err)
	}
	if err := r.loadDesiredHint(context.Background()); err != nil {
		return nil, fmt.Errorf("registry: desired properties: %w", err)
	}
	if r.events, err = openEventLog(r.store, o.Events, o.Node != ""); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if o.Node == "" {
		// A single node has no relay; a cluster's store may have left
		// events in the outbox.
		if err := r.drainOutbox(context.Background()); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	if r.link != nil {
		r.link.Serve(r.router.serve)
	}
	if r.inval == nil && o.Node == "" {
		// Loaded before New returns: a load running on could read a store
		// its owner closes under it.
		r.keys = newKeyFilter()
		if err := r.keys.load(context.Background(), r.store); err != nil {
			return nil, fmt.Errorf("registry: load the key filter: %w", err)
		}
	}
	return r, nil
}

// AddKicker registers a session holder. Call before serving traffic.
func (r *Registry) AddKicker(k Kicker) {
	r.kickMu.Lock()
	r.kickers = append(r.kickers, k)
	r.kickMu.Unlock()
}

func (r *Registry) kick(deviceID, reason string) {
	r.kickMu.RLock()
	defer r.kickMu.RUnlock()
	for _, k := range r.kickers {
		k.Kick(deviceID, reason)
	}
}

// Run sweeps expired devices, persists status changes and trims the
// event stream until ctx ends.
// It sweeps once before its first wait, so devices whose deadline passed
// while the platform was down are gone as soon as Run starts.
//
// The sweeps run on the node that holds the "sweeps" lease (on a single
// node, always); every node persists its own status changes.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.sweepInt)
	defer t.Stop()
	if r.node != "" {
		// The cluster's event relay, on the holder of its lease.
		relayDone := make(chan struct{})
		go func() { r.runRelay(ctx); close(relayDone) }()
		defer func() { <-relayDone }()
	}
	for {
		r.housekeep(ctx)
		select {
		case <-ctx.Done():
			// Report every held OFFLINE now: nobody is connected after a
			// restart.
			_ = r.flushStatusDue(context.Background(), time.Unix(1<<40, 0))
			return nil
		case <-t.C:
		}
	}
}

// housekeep is one round of Run's periodic work. It reports whether this
// node held the sweeps' lease.
func (r *Registry) housekeep(ctx context.Context) (swept bool) {
	if r.cache != nil {
		r.cache.tick(r.now())
	}
	held, err := r.lease.Hold(ctx, "sweeps", 3*r.sweepInt)
	if err != nil && ctx.Err() == nil {
		r.log.Error("sweep lease failed", "err", err)
	}
	if held {
		if _, err := r.SweepExpired(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("expiry sweep failed", "err", err)
		}
		if _, err := r.SweepAsyncCommands(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("async command sweep failed", "err", err)
		}
		if _, err := r.sweepDownlinks(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("downlink message sweep failed", "err", err)
		}
		if _, err := r.sweepDeadNodes(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("dead node sweep failed", "err", err)
		}
	}
	if _, err := r.sweepPreviousRun(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("sweep of this node's previous run failed", "err", err)
	}
	if err := r.flushStatus(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("status flush failed", "err", err)
	}
	if held {
		if _, err := r.SweepEvents(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("event trim failed", "err", err)
		}
		if _, err := r.sweepBans(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("ban sweep failed", "err", err)
		}
	}
	return held
}

// invalidated applies another node's committed write to this node's
// state: its cached records, its pending-command hint and (through its
// watchers) its ban list.
func (r *Registry) invalidated(keys []string) {
	if keys == nil { // notices may have been lost: trust nothing cached
		r.bansChanged()
		if r.cache != nil {
			r.cache.clear()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.loadPendingHint(ctx); err != nil {
			r.log.Error("reload pending-command hints after lost invalidations", "err", err)
		}
		if err := r.router.loadHeld(ctx); err != nil {
			r.log.Error("reload held downlink messages after lost invalidations", "err", err)
		}
		if err := r.loadDesiredHint(ctx); err != nil {
			r.log.Error("reload desired-property hints after lost invalidations", "err", err)
		}
		r.router.asyncCommandsMayWait("")
		return
	}
	bans := false
	for _, k := range keys {
		if isBanKey(k) {
			bans = true
		} else if cacheable(k) {
			if r.cache != nil {
				r.cache.invalidate(k)
			}
		} else if dev, ok := pendingKeyDevice(k); ok {
			r.pending.mark(dev)
			r.router.asyncCommandsMayWait(dev)
		} else if dev, ok := heldKeyDevice(k); ok {
			r.router.held.mark(dev)
		} else if dev, ok := desiredKeyDevice(k); ok {
			r.router.desired.mark(dev)
		}
	}
	if bans {
		r.bansChanged()
	}
}

// Close refuses further writes with ErrClosed. The store is the caller's
// to close, after the registry.
func (r *Registry) Close() error {
	r.closed.Store(true)
	return nil
}

// Queues lists the key prefixes of the registry's ordered deadline
// indexes, whose entries are deleted from the front as they fall due. An
// engine that can make such scans cheaper (badgerkv.Options.Queues) takes
// them from here.
func Queues() [][]byte { return [][]byte{expiryPrefix, asyncDeadlinePrefix, downlinkDeadlinePrefix} }

// maxConflictRetries bounds how often a write is re-run after the engine
// reported a conflict with a concurrent transaction (another node's).
// With conflictBackoff's waits, the last attempts of a write come about
// 3 s after its first: under a sustained create burst from several nodes
// into one product a batch can lose many times in a row (its creates
// share the event position and index pages with the other nodes'), and a
// late success is better than a refusal.
const maxConflictRetries = 48

// conflictBackoff waits before a write runs again after a conflict: a
// random time up to 1 ms doubled per attempt, at most 64 ms, so that
// nodes whose batches keep colliding (on the event position, or on a
// PostgreSQL index page both insert into) fall out of step instead of
// colliding again at once.
func conflictBackoff(ctx context.Context, attempt int) error {
	ceiling := time.Millisecond << min(attempt, 6)
	t := time.NewTimer(rand.N(ceiling) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// write runs fn in one durable transaction and returns once it has
// committed (or was refused). fn must do its checks before its writes or
// return an error: on error nothing it wrote is kept. fn may run more
// than once (after a conflict), each time against the current state.
// Before write returns, the node's cache has forgotten every record fn
// changed and the other nodes have been told (see Invalidator).
func (r *Registry) write(ctx context.Context, fn func(Writer) error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	for attempt := 0; ; attempt++ {
		tw := newTracked(r)
		var refused error // fn's own error, returned by the engine unchanged
		err := r.store.Update(ctx, func(t kv.Txn) error {
			tw.reset(t)
			if refused = fn(tw); refused != nil {
				return refused
			}
			t.OnCommit(tw.committed)
			return nil
		})
		if err != nil && err != refused && r.cache != nil {
			// The engine failed, perhaps after committing (an unknown
			// outcome runs no commit hook): forget what the write changed.
			for _, k := range tw.changed {
				r.cache.invalidate(k)
			}
		}
		tw.release()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, kv.ErrConflict) && attempt < maxConflictRetries:
			if err := conflictBackoff(ctx, attempt); err != nil {
				return err
			}
			continue
		case errors.Is(err, kv.ErrClosed):
			return ErrClosed
		default:
			return err
		}
	}
}

// view runs fn against a consistent snapshot of the store.
func (r *Registry) view(ctx context.Context, fn func(Reader) error) error {
	err := r.store.View(ctx, fn)
	if errors.Is(err, kv.ErrClosed) {
		return ErrClosed
	}
	return err
}
