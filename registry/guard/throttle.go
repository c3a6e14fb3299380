package guard

import (
	"sync/atomic"

	"golang.org/x/time/rate"
)

// Throttle rate-limits a log line that an attacker can trigger at will
// (a refused connection, an oversized publish), so a flood cannot fill
// the disk: a token bucket admits the line, and the lines it refused
// meanwhile are counted and reported by the next admitted one.
type Throttle struct {
	lim        *rate.Limiter
	suppressed atomic.Uint64
	// While the bucket is empty only every checkEvery-th line asks it
	// (reading the clock): a flood's suppressed lines cost an atomic
	// add. The bucket still admits every line written, so the rate
	// holds; a line is at most checkEvery-1 lines late.
	empty atomic.Bool
	calls atomic.Uint32
}

const checkEvery = 16

// NewThrottle admits perSecond lines a second on average, in bursts of
// up to burst; perSecond ≤ 0 admits every line.
func NewThrottle(perSecond float64, burst int) *Throttle {
	if perSecond <= 0 {
		return &Throttle{lim: rate.NewLimiter(rate.Inf, 0)}
	}
	return &Throttle{lim: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))}
}

// Allow reports whether to write the line, and how many lines were
// suppressed since the last one written (to be logged with it).
func (t *Throttle) Allow() (ok bool, suppressed uint64) {
	if t.empty.Load() && t.calls.Add(1)%checkEvery != 0 {
		t.suppressed.Add(1)
		return false, 0
	}
	if !t.lim.Allow() {
		t.empty.Store(true)
		t.suppressed.Add(1)
		return false, 0
	}
	t.empty.Store(false)
	return true, t.suppressed.Swap(0)
}
