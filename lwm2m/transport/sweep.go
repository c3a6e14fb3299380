package transport

import (
	"sync"
	"time"
)

// sessionSweep drives go-coap's periodic per-connection work
// (CheckExpirations: retransmitting our requests, the idle monitor, cache
// expiry) over the DTLS sessions without visiting every session every
// second. Only retransmissions need the one-second tick, and only a
// session with a request of ours in flight has any: hold marks it hot,
// and each tick checks the hot sessions, dropping those no longer busy.
// Every full-th tick checks them all, for the idle monitor and the caches,
// whose deadlines are minutes. A fleet of idle registered sessions then
// costs 1/full of a sweep a second, not a whole one (which was 8 µs per
// session: most of an idle server's CPU).
type sessionSweep[C comparable] struct {
	check func(c C, now time.Time)
	busy  func(c C) bool
	full  int

	mu   sync.Mutex
	all  map[C]struct{}
	hot  map[C]struct{}
	tick int
	// batch is reused by run (only the periodic runner calls it).
	batch []C
}

func newSessionSweep[C comparable](full int, check func(C, time.Time), busy func(C) bool) *sessionSweep[C] {
	return &sessionSweep[C]{check: check, busy: busy, full: max(full, 1), all: make(map[C]struct{}), hot: make(map[C]struct{})}
}

func (w *sessionSweep[C]) add(c C) {
	w.mu.Lock()
	w.all[c] = struct{}{}
	w.mu.Unlock()
}

func (w *sessionSweep[C]) remove(c C) {
	w.mu.Lock()
	delete(w.all, c)
	delete(w.hot, c)
	w.mu.Unlock()
}

// markHot asks for c to be checked every tick while it is busy. The
// caller makes c busy first: run drops a session from the hot set under
// the lock only if it is not busy, so a mark made after that check finds
// it gone and adds it back.
func (w *sessionSweep[C]) markHot(c C) {
	w.mu.Lock()
	if _, open := w.all[c]; open {
		w.hot[c] = struct{}{}
	}
	w.mu.Unlock()
}

// run is one tick.
func (w *sessionSweep[C]) run(now time.Time) {
	w.mu.Lock()
	w.tick++
	from := w.hot
	if w.tick%w.full == 0 {
		from = w.all
	}
	for c := range from {
		w.batch = append(w.batch, c)
	}
	w.mu.Unlock()
	for _, c := range w.batch {
		w.check(c, now)
	}
	w.mu.Lock()
	for c := range w.hot {
		if !w.busy(c) {
			delete(w.hot, c)
		}
	}
	w.mu.Unlock()
	clear(w.batch)
	w.batch = w.batch[:0]
}

func (w *sessionSweep[C]) snapshot() []C {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]C, 0, len(w.all))
	for c := range w.all {
		out = append(out, c)
	}
	return out
}
