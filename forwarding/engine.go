package forwarding

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// Registry is what the engine needs of the registry.
type Registry interface {
	AllRuleActions(ctx context.Context) ([]*registry.RuleAction, error)
	RoutingRule(ctx context.Context, project, id string) (*registry.RoutingRule, error)
	EventConsumer(ctx context.Context, project, name string) (*registry.EventConsumer, error)
	Events(ctx context.Context, project string, cursor uint64, limit int) (*registry.EventPage, error)
	AckEventsDropping(ctx context.Context, project, name string, cursor uint64, drops registry.EventDrops) error
	EventBacklogCut(ctx context.Context, project string, cursor uint64, maxBytes int64) (uint64, error)
	EventHorizon(ctx context.Context, project string) (uint64, error)
	FlowControlPolicies(ctx context.Context, project string) ([]*registry.FlowControlPolicy, error)
	BacklogPolicies(ctx context.Context, project string) ([]*registry.BacklogPolicy, error)
}

var _ Registry = (*registry.Registry)(nil)

// Waker tells a worker that has caught up with the stream that events of
// its project were committed since it took the channel (before its
// read), so it need not wait for the next poll. The registry wakes on its
// own node's commits and, on a cluster, on the other nodes' hints
// (registry.EventHinter); the poll is the fallback for a hint lost.
type Waker interface {
	EventsCommitted(project string) <-chan struct{}
}

var _ Waker = (*registry.Registry)(nil)

// Defaults of Options.
const (
	DefaultReload    = time.Second
	DefaultPoll      = 50 * time.Millisecond
	DefaultPageSize  = 500
	DefaultLanes     = 16
	DefaultRetryBase = 200 * time.Millisecond
	// DefaultRetryMax is IoTDA's: a failing destination is retried every
	// 3 minutes.
	DefaultRetryMax  = 3 * time.Minute
	DefaultDrainRate = 1000
	DefaultLeaseTTL  = 15 * time.Second
	// DefaultBacklogAge and DefaultBacklogSize are IoTDA's: a
	// destination's backlog is kept 24 hours or 1 GiB.
	DefaultBacklogAge   = 24 * time.Hour
	DefaultBacklogSize  = 1 << 30
	DefaultBacklogCheck = 10 * time.Second
)

// BacklogBounds bound what an action keeps undelivered: a message older
// than MaxAge, or beyond the newest MaxSize bytes of stored events after
// the action's cursor, is dropped (oldest first), counted and logged. A
// project's backlog policies lower them for its actions; 0 (a policy's
// "no backlog") drops what cannot be delivered at the first try.
type BacklogBounds struct {
	MaxAge  time.Duration
	MaxSize int64
}

// Options configure an Engine; zero fields take the defaults above.
type Options struct {
	Registry Registry
	// Lease elects the one node of a cluster that runs an action's
	// worker (lease "forward/{action_id}"); nil: this node runs all.
	Lease registry.Lease
	// Openers make the channels, by channel name.
	Openers map[string]Opener
	Logger  *slog.Logger

	// Reload is how often the actions are listed (new, changed and
	// deleted actions are picked up) and the leases renewed.
	Reload time.Duration
	// Poll is how long a worker that has caught up waits before reading
	// the stream again, unless Wake says first that events were
	// committed.
	Poll time.Duration
	// Wake wakes caught-up workers on a commit; nil: the Registry if it
	// is a Waker, else workers only poll.
	Wake Waker
	// PageSize bounds the events a worker reads, delivers and
	// acknowledges at once (at most registry.MaxEventsPage).
	PageSize int
	// Lanes bounds the deliveries in flight per action: each device's
	// messages go, in order, through one of Lanes concurrent streams.
	Lanes int
	// RetryBase and RetryMax bound the backoff after a failed delivery:
	// it doubles from RetryBase with each failure in a row, up to
	// RetryMax.
	RetryBase, RetryMax time.Duration
	// DrainRate bounds the messages per second an action delivers after
	// a failure, until it has caught up with the stream; a project's
	// flow-control policies lower it for the actions they apply to.
	DrainRate float64
	LeaseTTL  time.Duration
	// Delivered, if set, observes each message its destination
	// acknowledged: the action and the delay from the event's time (when
	// the registry recorded it) to the acknowledgement, which is what
	// forwarding adds to an uplink's way (iotgate_forwarding_delay_seconds).
	Delivered func(actionID string, delay time.Duration)
	// Backlog bounds each action's backlog; ChannelBacklog replaces it
	// for the actions of a channel (by name). Zero fields take the
	// defaults.
	Backlog        BacklogBounds
	ChannelBacklog map[string]BacklogBounds
	// BacklogCheck is how often an action that is behind the stream
	// measures its backlog against MaxSize (a read of up to MaxSize).
	BacklogCheck time.Duration
}

// backlog returns the bounds of a channel's actions.
func (o Options) backlog(channel string) BacklogBounds {
	b, ok := o.ChannelBacklog[channel]
	if !ok {
		b = o.Backlog
	}
	if b.MaxAge <= 0 {
		b.MaxAge = o.Backlog.MaxAge
	}
	if b.MaxSize <= 0 {
		b.MaxSize = o.Backlog.MaxSize
	}
	return b
}

func (o Options) withDefaults() Options {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.Reload, DefaultReload)
	set(&o.Poll, DefaultPoll)
	set(&o.RetryBase, DefaultRetryBase)
	set(&o.RetryMax, DefaultRetryMax)
	set(&o.LeaseTTL, DefaultLeaseTTL)
	set(&o.Backlog.MaxAge, DefaultBacklogAge)
	set(&o.BacklogCheck, DefaultBacklogCheck)
	if o.Backlog.MaxSize <= 0 {
		o.Backlog.MaxSize = DefaultBacklogSize
	}
	if o.PageSize <= 0 || o.PageSize > registry.MaxEventsPage {
		o.PageSize = DefaultPageSize
	}
	if o.Lanes <= 0 {
		o.Lanes = DefaultLanes
	}
	if o.DrainRate <= 0 {
		o.DrainRate = DefaultDrainRate
	}
	if o.Lease == nil {
		o.Lease = registry.LocalLease{}
	}
	if w, ok := o.Registry.(Waker); ok && o.Wake == nil {
		o.Wake = w
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Engine runs one worker per rule action this node holds the lease of.
type Engine struct {
	o Options

	mu      sync.Mutex
	workers map[string]*running
	stats   map[string]*Stats // by action id; kept while the action is
}

type running struct {
	updated time.Time
	cancel  context.CancelFunc
	done    chan struct{}
}

func (r *running) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Stats counts an action's deliveries on this node.
type Stats struct {
	Delivered atomic.Uint64 // messages the destination acknowledged
	Failures  atomic.Uint64 // failed delivery attempts
	// Dropped counts stream positions trimmed (by the event backlog
	// bounds) before the action delivered them: an upper bound on the
	// events lost (positions have gaps).
	Dropped atomic.Uint64
	// DroppedAge and DroppedSize count the messages the action's own
	// backlog bounds (BacklogBounds) dropped undelivered.
	DroppedAge, DroppedSize atomic.Uint64

	// cursor is the position the action has acknowledged (written);
	// oldest the time (Unix nanoseconds) of the oldest event it has read
	// and not yet delivered, 0 when it has caught up.
	cursor, oldest atomic.Int64
}

// ActionStats is a snapshot of an action's delivery on this node.
type ActionStats struct {
	ActionID                     string
	Delivered, Failures, Dropped uint64
	DroppedAge, DroppedSize      uint64
	// Cursor is the last position acknowledged.
	Cursor uint64
	// Lag is the age of the oldest event read and not yet delivered
	// (an outage's backlog shows here); 0 when the action has caught up.
	Lag time.Duration
}

// Snapshot returns the counters of the actions this node runs.
func (e *Engine) Snapshot(now time.Time) []ActionStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ActionStats, 0, len(e.workers))
	for id := range e.workers {
		st := e.stats[id]
		if st == nil {
			continue
		}
		a := ActionStats{ActionID: id, Delivered: st.Delivered.Load(), Failures: st.Failures.Load(),
			Dropped: st.Dropped.Load(), DroppedAge: st.DroppedAge.Load(), DroppedSize: st.DroppedSize.Load(),
			Cursor: uint64(st.cursor.Load())}
		if o := st.oldest.Load(); o != 0 {
			a.Lag = max(0, now.Sub(time.Unix(0, o)))
		}
		out = append(out, a)
	}
	return out
}

// New returns an engine; Run starts it.
func New(o Options) *Engine {
	return &Engine{o: o.withDefaults(), workers: make(map[string]*running), stats: make(map[string]*Stats)}
}

// Stats returns the counters of an action (nil if this node never ran it).
func (e *Engine) Stats(actionID string) *Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats[actionID]
}

// Run supervises the workers until ctx ends, then stops them.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.o.Reload)
	defer t.Stop()
	for {
		e.reconcile(ctx)
		select {
		case <-ctx.Done():
			e.stopAll()
			return
		case <-t.C:
		}
	}
}

func leaseName(actionID string) string { return "forward/" + actionID }

// reconcile starts a worker for each action this node can hold, stops
// those of deleted or changed actions and of leases lost.
func (e *Engine) reconcile(ctx context.Context) {
	actions, err := e.o.Registry.AllRuleActions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.o.Logger.Error("forwarding: list rule actions", "err", err)
		}
		return
	}
	seen := make(map[string]bool, len(actions))
	for _, a := range actions {
		seen[a.ID] = true
		e.mu.Lock()
		w := e.workers[a.ID]
		e.mu.Unlock()
		if w != nil && (!w.updated.Equal(a.Updated) || w.exited()) {
			// Changed: restart with the new detail, from the cursor; or
			// its worker gave up (its rule or cursor vanished under it):
			// start again, which finds out whether the action is gone.
			e.stop(a.ID)
			w = nil
		}
		held, err := e.o.Lease.Hold(ctx, leaseName(a.ID), e.o.LeaseTTL)
		if err != nil {
			if ctx.Err() == nil {
				e.o.Logger.Error("forwarding: action lease", "action", a.ID, "err", err)
			}
			held = false
		}
		switch {
		case held && w == nil:
			e.start(ctx, a)
		case !held && w != nil:
			e.o.Logger.Info("forwarding: action moved to another node", "action", a.ID)
			e.stop(a.ID)
		}
	}
	e.mu.Lock()
	var gone []string
	for id := range e.workers {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	for id := range e.stats {
		if !seen[id] {
			delete(e.stats, id)
		}
	}
	e.mu.Unlock()
	for _, id := range gone {
		e.stop(id)
	}
}

func (e *Engine) start(ctx context.Context, a *registry.RuleAction) {
	wctx, cancel := context.WithCancel(ctx)
	r := &running{updated: a.Updated, cancel: cancel, done: make(chan struct{})}
	e.mu.Lock()
	st := e.stats[a.ID]
	if st == nil {
		st = &Stats{}
		e.stats[a.ID] = st
	}
	e.workers[a.ID] = r
	e.mu.Unlock()
	w := newWorker(e.o, a, st)
	e.o.Logger.Info("forwarding: running action", "action", a.ID, "project", a.ProjectID, "channel", a.Channel)
	go func() {
		defer close(r.done)
		w.run(wctx)
	}()
}

func (e *Engine) stop(id string) {
	e.mu.Lock()
	r := e.workers[id]
	delete(e.workers, id)
	e.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

func (e *Engine) stopAll() {
	e.mu.Lock()
	ids := make([]string, 0, len(e.workers))
	for id := range e.workers {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	for _, id := range ids {
		e.stop(id)
	}
}
