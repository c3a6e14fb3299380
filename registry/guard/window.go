package guard

import (
	"net/netip"
	"sync"
)

// counters counts events per key in a sliding window, approximated the
// way Cloudflare's rate limiter does: the current fixed window's count
// plus the previous one's weighted by how much of it the sliding window
// still covers. Each key costs one small map entry, whatever the rate;
// the table holds at most max keys.
type counters[K comparable] struct {
	span int64 // window, in nanoseconds
	max  int
	// keep makes a new key's own copy (a caller's string may alias a
	// whole packet, which the table must not pin).
	keep func(K) K

	mu sync.Mutex
	m  map[K]slot
}

// slot is one key's count: start is its current fixed window's start.
type slot struct {
	start     int64
	cur, prev uint32
}

func newCounters[K comparable](w Window, max int, keep func(K) K) *counters[K] {
	return &counters[K]{span: int64(w.Window), max: max, keep: keep, m: make(map[K]slot)}
}

// add counts one event for k at now and returns the events in the
// sliding window ending at now, this one included.
func (c *counters[K]) add(k K, now int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	if !ok {
		if len(c.m) >= c.max {
			c.evict(now)
		}
		k = c.keep(k)
	}
	s = s.advance(now, c.span)
	s.cur++
	c.m[k] = s
	return s.count(now, c.span)
}

// reset forgets k (its ban has been decided).
func (c *counters[K]) reset(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// advance moves the slot's fixed window to the one holding now.
func (s slot) advance(now, span int64) slot {
	switch {
	case now < s.start+span:
	case now < s.start+2*span:
		s = slot{start: s.start + span, prev: s.cur}
	default:
		s = slot{start: now - now%span}
	}
	return s
}

// count is the sliding window's estimate: all of the current fixed
// window, and the share of the previous one the sliding window covers.
func (s slot) count(now, span int64) int {
	covered := span - (now - s.start) // of the previous window
	return int(s.cur) + int(int64(s.prev)*covered/span)
}

// evict drops one key to make room: a stale one if the sample has one,
// else the sampled key whose window started first (least recently
// counted). The caller holds the lock.
func (c *counters[K]) evict(now int64) {
	var victim K
	oldest, found, seen := int64(0), false, 0
	for k, s := range c.m {
		if s.start+2*c.span <= now {
			delete(c.m, k)
			return
		}
		if !found || s.start < oldest {
			victim, oldest, found = k, s.start, true
		}
		if seen++; seen >= evictionSample {
			break
		}
	}
	if found {
		delete(c.m, victim)
	}
}

// addressKey is how an address is counted and banned: IPv4 (and
// IPv4-mapped IPv6) addresses alone, IPv6 addresses by their /64.
func addressKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 32
	}
	p, _ := a.Prefix(bits)
	return p
}

// AddressKey is the prefix an address is counted and banned by: the
// address itself for IPv4 (and IPv4-mapped IPv6), its /64 for IPv6.
// Adapters use it to cap per-address resources the same way.
func AddressKey(a netip.Addr) netip.Prefix { return addressKey(a) }
