package api

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// IoTDA's throttling answer. IoTDA documents IOTDA.021101 with this
// message for its device-side HTTPS API (status 403 there); the REST API
// answers it with 429, the status HTTP clients and Huawei's API gateway
// (APIG.0308) use for throttling, and a Retry-After header.
const (
	codeRateLimited = "IOTDA.021101"
	msgRateLimited  = "Request reached the maximum rate limit."
)

// clientAddr is the unit of per-address limits: an IPv4 address, or the
// /64 of an IPv6 one (a single host is routinely given a whole /64).
// The zero Addr for an address that does not parse (a test recorder, a
// Unix socket) makes those share one bucket.
func clientAddr(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return limitUnit(ap.Addr())
}

func limitUnit(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// maxTrackedAddrs bounds the per-address buckets held at once.
const maxTrackedAddrs = 1 << 16

// addrLimiter is a token bucket per source address, in a table of at
// most capacity entries. A bucket that has refilled holds no state, so when
// the table is full such buckets are dropped (at most one sweep a
// second, so a flood of new addresses cannot make every request pay for
// a sweep); while the table stays full, new addresses share one overflow
// bucket: a spread-out flood is then limited as a whole instead of
// growing memory.
type addrLimiter struct {
	limit    rate.Limit
	burst    int
	capacity int

	mu        sync.Mutex
	buckets   map[netip.Addr]*rate.Limiter
	overflow  *rate.Limiter
	nextSweep time.Time
}

// newAddrLimiter returns nil (no limit) when r <= 0.
func newAddrLimiter(r float64, burst, capacity int) *addrLimiter {
	if r <= 0 {
		return nil
	}
	burst = max(burst, 1)
	return &addrLimiter{limit: rate.Limit(r), burst: burst, capacity: capacity,
		buckets: make(map[netip.Addr]*rate.Limiter), overflow: rate.NewLimiter(rate.Limit(r), burst)}
}

// bucket returns a's bucket, making one when it has none and create is
// set. Without create, an address with no bucket gets nil (a full
// bucket, which is what a new one would be), or the overflow bucket
// while the table is full.
func (l *addrLimiter) bucket(a netip.Addr, now time.Time, create bool) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[a]; b != nil {
		return b
	}
	if !create {
		if len(l.buckets) >= l.capacity {
			return l.overflow
		}
		return nil
	}
	if len(l.buckets) >= l.capacity && !now.Before(l.nextSweep) {
		l.nextSweep = now.Add(time.Second)
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.buckets, k)
			}
		}
	}
	if len(l.buckets) >= l.capacity {
		return l.overflow
	}
	b := rate.NewLimiter(l.limit, l.burst)
	l.buckets[a] = b
	return b
}

// blocked reports, without taking a token, whether a's bucket is empty,
// and when it will hold one again. An address without a bucket is not
// given one: well-behaved clients leave no state.
func (l *addrLimiter) blocked(a netip.Addr, now time.Time) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	b := l.bucket(a, now, false)
	if b == nil {
		return false, 0
	}
	return empty(b, now)
}

// take takes a token from a's bucket; false (and the wait) when empty.
func (l *addrLimiter) take(a netip.Addr, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	return take(l.bucket(a, now, true), now)
}

func take(b *rate.Limiter, now time.Time) (bool, time.Duration) {
	if b.AllowN(now, 1) {
		return true, 0
	}
	_, wait := empty(b, now)
	return false, wait
}

func empty(b *rate.Limiter, now time.Time) (bool, time.Duration) {
	tokens := b.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) / float64(b.Limit()) * float64(time.Second))
}

// rateLimited is IoTDA's 429 answer, with Retry-After.
func rateLimited(c echo.Context, wait time.Duration) *apiError {
	setRetryAfter(c, wait)
	return &apiError{Status: http.StatusTooManyRequests, Code: codeRateLimited, Msg: msgRateLimited}
}

// setRetryAfter says when a token will be there, in whole seconds (at
// least 1), as RFC 9110 wants.
func setRetryAfter(c echo.Context, wait time.Duration) {
	c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Max(1, math.Ceil(wait.Seconds())))))
}
