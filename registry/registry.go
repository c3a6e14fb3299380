// Package registry is iotgate's domain: projects, products, devices, their
// credentials, connection status and unconnected-registration expiry. It
// knows no network protocol; the REST API and the LwM2M and MQTT listeners
// are adapters that call it.
//
// Writes go through one committer goroutine that packs the writes waiting
// at that moment into one durable transaction (group commit) and
// acknowledges each only after that transaction is on disk. A write that
// fails its own checks stages nothing, so it never spoils its batch.
//
// Every change a consumer may care about is also recorded, in the same
// transaction, as an event in a durable stream that named consumers read
// in order and acknowledge (events.go, eventstream.go). Stream positions
// come from one node-local counter today; eventstream.go says what a
// multi-node engine must supply instead.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Registry.
type Options struct {
	Store     Store
	MasterKey []byte // 32 bytes; seals secrets at rest
	Logger    *slog.Logger
	// SweepInterval is how often expired unconnected devices are deleted.
	// Zero means one second.
	SweepInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxBatch bounds how many writes share one commit. Zero means 256.
	MaxBatch int
	// CacheEntries bounds the in-memory cache of device records and index
	// entries. Zero means 2097152 (about a million devices); negative disables the cache.
	CacheEntries int
	// Quotas; zero fields take DefaultQuotas' values.
	Quotas Quotas
	// Events bounds the event backlog.
	Events EventOptions
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
}

// DefaultQuotas are the figures of the product documentation the project
// started from.
var DefaultQuotas = Quotas{DevicesPerProduct: 500_000, SubDevicesPerGateway: 1_500, ClientIDsPerDevice: 5, SubDevicesPerRequest: 30}

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
	return q
}

// Registry is safe for concurrent use.
type Registry struct {
	store    Store
	seal     *sealer
	log      *slog.Logger
	now      func() time.Time
	seq      *seqGen
	sweepInt time.Duration
	maxBatch int
	quotas   Quotas

	cache    *cache // nil when disabled
	ops      chan *op
	loopDone chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	presence *presence
	statusMu sync.Mutex
	statusQ  map[string]time.Time // device_id -> status change to persist

	kickMu  sync.RWMutex
	kickers []Kicker

	commits, committed atomic.Uint64 // durable transactions, ops they carried

	pending *pendingHint // devices that may have PENDING async commands

	// expiryFloor and asyncFloor are where the sweeps of the two deadline
	// indexes start (see deadlineFloor).
	expiryFloor, asyncFloor *deadlineFloor

	events *eventLog // the durable event stream's node state

	// txnDevices holds the device record keys the ops of the transaction
	// being built have written so far (committer goroutine only).
	txnDevices map[string]struct{}
}

// CommitStats counts the committer's durable transactions since start and
// the writes decided in them (applied, or refused by their own checks):
// Ops/Commits is how many writes share one sync to disk (group commit).
type CommitStats struct {
	Commits uint64 `json:"commits"`
	Ops     uint64 `json:"ops"`
}

// CommitStats reports the group commit so far.
func (r *Registry) CommitStats() CommitStats {
	return CommitStats{Commits: r.commits.Load(), Ops: r.committed.Load()}
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
		store:    o.Store,
		seal:     s,
		log:      o.Logger,
		now:      o.Now,
		sweepInt: o.SweepInterval,
		maxBatch: o.MaxBatch,
		quotas:   o.Quotas.withDefaults(),
		ops:      make(chan *op, 1024),
		loopDone: make(chan struct{}),
		stop:     make(chan struct{}),
		presence: newPresence(),
		statusQ:  make(map[string]time.Time),

		txnDevices: make(map[string]struct{}),
		pending:    newPendingHint(),

		expiryFloor: newDeadlineFloor(expiryPrefix),
		asyncFloor:  newDeadlineFloor(asyncDeadlinePrefix),
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
	if r.maxBatch <= 0 {
		r.maxBatch = 256
	}
	switch {
	case o.CacheEntries == 0:
		r.cache = newCache(1 << 21)
	case o.CacheEntries > 0:
		r.cache = newCache(o.CacheEntries)
	}
	r.seq = newSeqGen(r.now())
	if err := r.loadPendingHint(); err != nil {
		return nil, fmt.Errorf("registry: pending commands: %w", err)
	}
	if r.events, err = openEventLog(r.store, o.Events); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r.wg.Add(1)
	go r.commitLoop()
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
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.sweepInt)
	defer t.Stop()
	for {
		if _, err := r.SweepExpired(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("expiry sweep failed", "err", err)
		}
		if _, err := r.SweepAsyncCommands(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("async command sweep failed", "err", err)
		}
		if err := r.flushStatus(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("status flush failed", "err", err)
		}
		if _, err := r.SweepEvents(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("event trim failed", "err", err)
		}
		select {
		case <-ctx.Done():
			_ = r.flushStatus(context.Background())
			return nil
		case <-t.C:
		}
	}
}

// Close stops the committer after the writes already queued.
func (r *Registry) Close() error {
	r.stopOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
	return nil
}

// op is one write waiting for the committer.
type op struct {
	fn   func(Writer) error
	done chan error
}

// write runs fn in a durable transaction shared with other concurrent
// writes and returns once it is committed (or refused). fn must do its
// checks before its writes or return an error: on error its writes are
// discarded, not the batch.
func (r *Registry) write(ctx context.Context, fn func(Writer) error) error {
	o := &op{fn: fn, done: make(chan error, 1)}
	select {
	case r.ops <- o:
	case <-r.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the write may commit, so wait for the outcome even if
	// ctx ends: the caller must never be told "failed" for a kept write.
	select {
	case err := <-o.done:
		return err
	case <-r.loopDone:
		// The committer has exited; it may still have answered us.
		select {
		case err := <-o.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (r *Registry) commitLoop() {
	defer r.wg.Done()
	defer close(r.loopDone)
	batch := make([]*op, 0, r.maxBatch)
	for {
		select {
		case o := <-r.ops:
			batch = append(batch[:0], o)
		case <-r.stop:
			// Refuse what is still queued rather than leave callers hanging.
			for {
				select {
				case o := <-r.ops:
					o.done <- ErrClosed
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < r.maxBatch {
			select {
			case o := <-r.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		for len(batch) > 0 {
			n := r.commit(batch)
			batch = batch[n:]
		}
	}
}

// maxTxnBytes keeps one commit well under Badger's transaction limit
// (about 15% of the 64 MB memtable), so large records (1 MB messages)
// cannot make a whole batch fail.
const maxTxnBytes = 4 << 20

// commit runs a prefix of batch in one durable transaction and answers
// those ops; it returns how many it took. It stops before an op whose
// writes would push the transaction past maxTxnBytes (that op runs again,
// against the new state, in the next transaction).
func (r *Registry) commit(batch []*op) int {
	results := make([]error, len(batch))
	var written, marks []string
	var fills []cacheFill
	taken := 0
	floors := [...]*deadlineFloor{r.expiryFloor, r.asyncFloor}
	var deadlines [len(floors)]int64 // the lowest each index was given
	err := r.store.Update(func(w Writer) error {
		written, marks, fills, taken = written[:0], marks[:0], fills[:0], 0
		deadlines = [len(floors)]int64{math.MaxInt64, math.MaxInt64}
		clear(r.txnDevices)
		size := 0
		for i, o := range batch {
			st := newStaged(w)
			st.cache, st.earlier = r.cache, r.txnDevices
			err := o.fn(st)
			if err == nil && taken > 0 && size+st.size > maxTxnBytes {
				break
			}
			taken++
			if err != nil {
				results[i] = err
				continue
			}
			if err := st.apply(); err != nil {
				return err
			}
			size += st.size
			for _, k := range st.keys {
				if family, _, _ := cutPart(k); family == "d" {
					r.txnDevices[k] = struct{}{}
				} else if dev, ok := pendingKeyDevice(k); ok && st.values[k] != nil {
					marks = append(marks, dev)
				}
				for i, f := range floors {
					if ns, ok := f.deadline(k); ok && st.values[k] != nil {
						deadlines[i] = min(deadlines[i], ns)
					}
				}
			}
			written = append(written, st.keys...)
			fills = append(fills, st.fills...)
		}
		return nil
	})
	// Invalidate before acknowledging, so a caller that saw its write
	// succeed never reads the old value back from the cache. (On a failed
	// commit nothing changed, but invalidating is harmless.)
	if r.cache != nil {
		for _, k := range written {
			if cacheable(k) {
				r.cache.invalidate(k)
			}
		}
		if err == nil {
			// What was just written is what the next reads want (the first
			// connect after a create, the reconnect after an activation).
			for _, f := range fills {
				r.cache.set(f.key, f.value)
			}
		}
	}
	if err == nil {
		// Before the acknowledgement: whoever learns of a new pending
		// command can already find it.
		for _, dev := range marks {
			r.pending.mark(dev)
		}
		for i, f := range floors {
			if deadlines[i] != math.MaxInt64 {
				f.lower(deadlines[i])
			}
		}
	}
	if taken == 0 { // the store failed before any op ran
		taken = len(batch)
	}
	if err == nil {
		r.commits.Add(1)
		r.committed.Add(uint64(taken))
	}
	for i, o := range batch[:taken] {
		if err != nil {
			o.done <- fmt.Errorf("commit: %w", err)
		} else {
			o.done <- results[i]
		}
	}
	return taken
}

// staged buffers one op's writes so a failing op leaves the shared
// transaction untouched. Reads see the op's own writes first.
type staged struct {
	w      Writer
	keys   []string
	values map[string][]byte // nil value: delete
	size   int               // bytes of keys and values staged
	fills  []cacheFill       // decoded values for the cache, once committed

	// cache and earlier let deviceExists answer from the cache: it holds
	// what is committed, and earlier names the device records the ops
	// before this one in the transaction wrote (which it does not show).
	cache   *cache
	earlier map[string]struct{}
}

// cacheFill is a decoded value (*Device, or the device id of an index
// entry) to cache under key once its write has committed.
type cacheFill struct {
	key   string
	value any
}

// cacheAfterCommit caches v under k if and when this op's writes commit.
func (s *staged) cacheAfterCommit(k string, v any) {
	s.fills = append(s.fills, cacheFill{key: k, value: v})
}

// cacheDevice has the committer cache d (and the index entries given)
// once the write w belongs to has committed; w's writes must include d's
// record. A no-op for writers that are not the committer's.
func cacheDevice(w Writer, d *Device, index ...[]byte) {
	s, ok := w.(*staged)
	if !ok {
		return
	}
	cp := *d
	cp.Status = "" // as read from the store: fillStatus sets it per read
	s.cacheAfterCommit(string(deviceKey(d.DeviceID)), &cp)
	for _, k := range index {
		s.cacheAfterCommit(string(k), d.DeviceID)
	}
}

// deviceExists reports whether device id exists as seen by an op of the
// committer: from the cache when it holds the record and no earlier op of
// this transaction wrote it, else from the store (through w, so this op's
// and the transaction's own writes count). A cached record is committed
// and nothing but the committer changes it, so the answer is the store's.
func deviceExists(w Reader, id string) (bool, error) {
	k := deviceKey(id)
	if s, ok := w.(*staged); ok && s.cachedUnwritten(k) {
		return true, nil
	}
	_, err := w.Get(k)
	if errors.Is(err, ErrNoKey) {
		return false, nil
	}
	return err == nil, err
}

// cachedUnwritten reports whether the cache holds k's committed device
// record and no write of the transaction so far (this op's or an earlier
// op's) has touched k.
func (s *staged) cachedUnwritten(k []byte) bool {
	if s.cache == nil {
		return false
	}
	if _, ok := s.values[string(k)]; ok {
		return false
	}
	if _, ok := s.earlier[string(k)]; ok {
		return false
	}
	v, _, ok := s.cache.get(k)
	_, isDevice := v.(*Device)
	return ok && isDevice
}

func newStaged(w Writer) *staged { return &staged{w: w, values: make(map[string][]byte, 8)} }

func (s *staged) Get(k []byte) ([]byte, error) {
	if v, ok := s.values[string(k)]; ok {
		if v == nil {
			return nil, ErrNoKey
		}
		return v, nil
	}
	return s.w.Get(k)
}

// Scan sees the batch's committed-so-far state less the keys this op
// has deleted (an op that drops list entries one by one looks for the
// next live one), but not the values this op has set: no op scans what
// it has just written.
func (s *staged) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	return s.w.Scan(prefix, from, reverse, func(k, v []byte) (bool, error) {
		if staged, ok := s.values[string(k)]; ok && staged == nil {
			return true, nil
		}
		return fn(k, v)
	})
}

func (s *staged) Set(k, v []byte) error {
	if v == nil {
		v = []byte{}
	}
	s.put(string(k), v)
	return nil
}

func (s *staged) Delete(k []byte) error {
	s.put(string(k), nil)
	return nil
}

func (s *staged) put(k string, v []byte) {
	if _, ok := s.values[k]; !ok {
		s.keys = append(s.keys, k)
	}
	s.values[k] = v
	s.size += len(k) + len(v)
}

func (s *staged) apply() error {
	for _, k := range s.keys {
		v := s.values[k]
		var err error
		if v == nil {
			err = s.w.Delete([]byte(k))
		} else {
			err = s.w.Set([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
