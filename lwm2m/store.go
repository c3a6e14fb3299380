package lwm2m

import (
	"container/heap"
	"sync"
	"time"
)

// regStore keeps the live registrations in memory, by registration id,
// by endpoint name and by device (two endpoint spellings, "urn:imei:N"
// and "N", can name one device, which has at most one registration), and
// orders their lifetimes in a deadline heap: renewing is O(log n) and a
// sweep touches only the registrations that are due, so a 100k fleet
// needs no timer or goroutine per registration.
type regStore struct {
	mu         sync.RWMutex
	byID       map[string]*entry
	byEndpoint map[string]*entry
	byDevice   map[string]*entry
	deadlines  deadlineHeap
}

func newRegStore() *regStore {
	return &regStore{byID: make(map[string]*entry), byEndpoint: make(map[string]*entry), byDevice: make(map[string]*entry)}
}

// add stores e with its lifetime deadline and returns the registration it
// replaces (same device), which it removes; nil if none.
func (s *regStore) add(e *entry, deadline time.Time) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.byDevice[e.deviceID]
	if old != nil {
		s.removeLocked(old)
	}
	if o := s.byEndpoint[e.reg.Load().Endpoint]; o != nil {
		s.removeLocked(o) // cannot differ from old, but keep the maps exact
	}
	s.byID[e.id] = e
	s.byEndpoint[e.reg.Load().Endpoint] = e
	s.byDevice[e.deviceID] = e
	e.deadline = deadline
	heap.Push(&s.deadlines, e)
	return old
}

// renew moves e's deadline; false if e is no longer stored.
func (s *regStore) renew(e *entry, deadline time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.heapIdx < 0 || s.byID[e.id] != e {
		return false
	}
	e.deadline = deadline
	heap.Fix(&s.deadlines, e.heapIdx)
	return true
}

// remove drops e if it is still stored; false if it was not.
func (s *regStore) remove(e *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID[e.id] != e {
		return false
	}
	s.removeLocked(e)
	return true
}

func (s *regStore) removeLocked(e *entry) {
	delete(s.byID, e.id)
	if s.byEndpoint[e.reg.Load().Endpoint] == e {
		delete(s.byEndpoint, e.reg.Load().Endpoint)
	}
	if s.byDevice[e.deviceID] == e {
		delete(s.byDevice, e.deviceID)
	}
	if e.heapIdx >= 0 {
		heap.Remove(&s.deadlines, e.heapIdx)
	}
	e.removed.Store(true)
}

// deadlineOf returns e's deadline; false if e is no longer stored.
func (s *regStore) deadlineOf(e *entry) (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e.heapIdx < 0 || s.byID[e.id] != e {
		return time.Time{}, false
	}
	return e.deadline, true
}

func (s *regStore) get(id string) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byID[id]
}

func (s *regStore) endpoint(ep string) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byEndpoint[ep]
}

func (s *regStore) device(id string) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byDevice[id]
}

func (s *regStore) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byID)
}

// expire removes and returns up to max registrations whose deadline is not
// after now, earliest first.
func (s *regStore) expire(now time.Time, max int) []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*entry
	for len(out) < max && len(s.deadlines) > 0 && !s.deadlines[0].deadline.After(now) {
		e := s.deadlines[0]
		s.removeLocked(e)
		out = append(out, e)
	}
	return out
}

// all returns every stored registration (shutdown).
func (s *regStore) all() []*entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*entry, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, e)
	}
	return out
}

// deadlineHeap is a min-heap of entries by deadline; entries know their
// index so a renewal or removal is O(log n).
type deadlineHeap []*entry

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *deadlineHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.heapIdx = -1
	*h = old[:len(old)-1]
	return e
}
