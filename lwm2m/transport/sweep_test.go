package transport

import (
	"testing"
	"time"
)

type fakeSession struct {
	busy   bool
	checks int
}

// A tick checks the sessions with a request in flight; every full-th
// tick checks them all; a session leaves the hot set once it is idle and
// the sweep once it is removed.
func TestSessionSweep(t *testing.T) {
	idle, requesting, closed := &fakeSession{}, &fakeSession{}, &fakeSession{}
	w := newSessionSweep(3, func(s *fakeSession, _ time.Time) { s.checks++ }, func(s *fakeSession) bool { return s.busy })
	for _, s := range []*fakeSession{idle, requesting, closed} {
		w.add(s)
	}
	w.remove(closed)
	w.markHot(closed) // a request racing the session's end: not swept

	requesting.busy = true
	w.markHot(requesting)
	steps := []struct {
		name               string
		before             func()
		idle, requesting   int // checks so far
		hotAfter, allAfter int
	}{
		{"tick 1: the busy session only", nil, 0, 1, 1, 2},
		{"tick 2: again", nil, 0, 2, 1, 2},
		{"tick 3: a full sweep", nil, 1, 3, 1, 2},
		{"tick 4: request answered, last hot check", func() { requesting.busy = false }, 1, 4, 0, 2},
		{"tick 5: nothing hot", nil, 1, 4, 0, 2},
		{"tick 6: a full sweep", nil, 2, 5, 0, 2},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		w.run(time.Now())
		if idle.checks != st.idle || requesting.checks != st.requesting || closed.checks != 0 {
			t.Fatalf("%s: checks idle %d requesting %d closed %d, want %d %d 0",
				st.name, idle.checks, requesting.checks, closed.checks, st.idle, st.requesting)
		}
		if len(w.hot) != st.hotAfter || len(w.all) != st.allAfter {
			t.Fatalf("%s: %d hot of %d, want %d of %d", st.name, len(w.hot), len(w.all), st.hotAfter, st.allAfter)
		}
	}
}

func TestFullSweepEvery(t *testing.T) {
	for _, tt := range []struct {
		idle time.Duration
		want int
	}{
		{1500 * time.Millisecond, 1},
		{2 * time.Minute, 10},
		{20 * time.Second, 5},
		{time.Hour, 10},
	} {
		if got := fullSweepEvery(tt.idle); got != tt.want {
			t.Errorf("fullSweepEvery(%v) = %d, want %d", tt.idle, got, tt.want)
		}
	}
}
