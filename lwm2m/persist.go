package lwm2m

import (
	"context"
	"sync"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// SessionStore keeps registrations across restarts of the server and, on
// a cluster, shares them between nodes (a NoSec device's Update may reach
// any node); a *registry.Registry satisfies it. Each registration is one
// session record of its device, found by device or by registration id.
type SessionStore interface {
	SaveSessionRecords(ctx context.Context, put, drop []registry.SessionRecord) error
	SessionRecordByHandle(ctx context.Context, handle string) (registry.SessionRecord, error)
	SessionRecords(ctx context.Context, fn func(registry.SessionRecord) bool) error
	// Resumed records the session of a registration restored after a
	// restart (registry.Registry.Resumed).
	Resumed(ctx context.Context, deviceID string) (registry.Session, error)
}

// DefaultSaveInterval is Options.SaveInterval's default.
const DefaultSaveInterval = time.Second

// persister is the write-behind queue of registration records: Register,
// Update and Observe mark an entry dirty, its end queues its deletion,
// and one goroutine (saveLoop) writes what changed since the last round
// in a few batched transactions. So a register storm costs a few
// group-committed writes a second rather than one synchronous write per
// Register, and a kill -9 loses at most the changes of the last
// SaveInterval (their devices' next Update gets 4.04 and they register
// again, as before this store existed).
type persister struct {
	mu      sync.Mutex
	pending map[string]pendingSave // by device
}

// pendingSave is what the next round writes of one device: the records
// of ended registrations to delete (by registration id: drop, and more
// in the rare case of several), then the current registration to store,
// if any. A re-registration (one drop, one put) allocates nothing.
type pendingSave struct {
	put  *entry
	drop string
	more []string
}

// drops lists the registration ids to delete.
func (ps pendingSave) drops() []string {
	if ps.drop == "" {
		return ps.more
	}
	return append([]string{ps.drop}, ps.more...)
}

func (ps *pendingSave) addDrop(id string) {
	if ps.drop == "" {
		ps.drop = id
		return
	}
	ps.more = append(ps.more, id)
}

func newPersister() *persister { return &persister{pending: make(map[string]pendingSave)} }

// dirty queues e's record to be written.
func (p *persister) dirty(e *entry) {
	p.mu.Lock()
	ps := p.pending[e.deviceID]
	ps.put = e
	p.pending[e.deviceID] = ps
	p.mu.Unlock()
}

// gone queues the deletion of e's record.
func (p *persister) gone(e *entry) {
	p.mu.Lock()
	ps := p.pending[e.deviceID]
	if ps.put == e {
		ps.put = nil
	}
	ps.addDrop(e.id)
	p.pending[e.deviceID] = ps
	p.mu.Unlock()
}

// take empties the queue and returns what was in it.
func (p *persister) take() map[string]pendingSave {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 {
		return nil
	}
	out := p.pending
	p.pending = make(map[string]pendingSave, len(out))
	return out
}

// requeue puts back what a failed round could not write, unless newer
// changes of the same device were queued meanwhile.
func (p *persister) requeue(m map[string]pendingSave) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for dev, ps := range m {
		cur, ok := p.pending[dev]
		if !ok {
			p.pending[dev] = ps
			continue
		}
		next := pendingSave{put: cur.put}
		for _, id := range append(ps.drops(), cur.drops()...) {
			next.addDrop(id)
		}
		if next.put == nil && ps.put != nil && !ps.put.removed.Load() {
			next.put = ps.put
		}
		p.pending[dev] = next
	}
}

// markDirty queues e's record for the next save (no-op without a store).
func (s *Server) markDirty(e *entry) {
	if s.saved != nil {
		s.saved.dirty(e)
	}
}

// markGone queues the deletion of e's record (no-op without a store).
func (s *Server) markGone(e *entry) {
	if s.saved != nil {
		s.saved.gone(e)
	}
}

// renewSaved reports whether an Update that moved e's deadline to
// deadline, changing nothing else that is stored, must rewrite the
// record: only once the stored expiry is at least half a lifetime behind
// the new deadline. A device whose Updates come less than half a
// lifetime apart thus writes at most every other lifetime/2; one whose
// Updates come further apart writes each time. Either way the stored
// expiry stays after the device's next Update on its usual schedule, so
// a restart cannot expire a registration whose device keeps its rhythm.
func (e *entry) renewSaved(deadline time.Time, lifetime time.Duration) bool {
	return deadline.UnixNano()-e.savedExpiry.Load() >= int64(lifetime/2)
}

// durableChange reports whether next differs from old in what the
// record stores, leaving aside the times.
func durableChange(old, next *Registration) bool {
	if old.Lifetime != next.Lifetime || old.Binding != next.Binding || old.QueueMode != next.QueueMode ||
		old.SMS != next.SMS || old.RootPath != next.RootPath || old.Formats != next.Formats || old.Addr != next.Addr ||
		len(old.Objects) != len(next.Objects) {
		return true
	}
	for i := range old.Objects {
		if old.Objects[i] != next.Objects[i] {
			return true
		}
	}
	return false
}

// record encodes e's registration and observations as its session
// record, with its current deadline as the expiry.
func (s *Server) record(e *entry) (registry.SessionRecord, bool) {
	deadline, ok := s.store.deadlineOf(e)
	if !ok {
		return registry.SessionRecord{}, false
	}
	e.mu.Lock()
	obs := make([]savedObservation, 0, len(e.observations))
	for _, o := range e.observations {
		obs = append(obs, savedObservation{token: o.token, path: o.path})
	}
	e.mu.Unlock()
	r := e.reg.Load()
	return registry.SessionRecord{DeviceID: e.deviceID, Handle: e.id, Expires: deadline,
		Data: encodeRegistration(make([]byte, 0, 96+24*len(r.Objects)), r, obs)}, true
}

// saveLoop writes the queued records every SaveInterval until the server
// stops; Shutdown writes the last ones.
func (s *Server) saveLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.SaveInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.save(s.ctx); err != nil && s.ctx.Err() == nil {
				s.log.Error("lwm2m: saving registrations", "err", err)
			}
		}
	}
}

// save writes what the queue holds in one SaveSessionRecords call (which
// batches its transactions); on failure it queues it again for the next
// round. One save runs at a time.
func (s *Server) save(ctx context.Context) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	q := s.saved.take()
	if q == nil {
		return nil
	}
	var put, drop []registry.SessionRecord
	var saved []*entry
	for dev, ps := range q {
		if ps.put != nil && !ps.put.removed.Load() {
			if rec, ok := s.record(ps.put); ok {
				// The device's record is replaced, whichever registration
				// it held: the ended ones need no deletion of their own
				// (a re-registration writes one record, not two).
				put = append(put, rec)
				saved = append(saved, ps.put)
				continue
			}
		}
		if ps.drop != "" {
			drop = append(drop, registry.SessionRecord{DeviceID: dev, Handle: ps.drop})
		}
		for _, id := range ps.more {
			drop = append(drop, registry.SessionRecord{DeviceID: dev, Handle: id})
		}
	}
	if err := s.o.Sessions.SaveSessionRecords(ctx, put, drop); err != nil {
		s.saved.requeue(q)
		return err
	}
	for i, e := range saved {
		e.savedExpiry.Store(put[i].Expires.UnixNano())
	}
	return nil
}
