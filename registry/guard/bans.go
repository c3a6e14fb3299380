package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Source says who banned: the guard itself or an operator.
type Source string

const (
	SourceAuto   Source = "auto"
	SourceManual Source = "manual"
)

// Target is what a ban applies to: an identity or an address prefix
// (exactly one of the two).
type Target struct {
	Identity string
	Prefix   netip.Prefix
}

// AddressTarget is the target that bans addr as the guard counts it:
// an IPv4 address, or the /64 of an IPv6 one.
func AddressTarget(addr netip.Addr) Target {
	return Target{Prefix: addressKey(addr)}
}

// String is the identity, or the prefix in CIDR form.
func (t Target) String() string {
	if t.Identity != "" {
		return t.Identity
	}
	return t.Prefix.String()
}

// Ban is one entry of the ban list.
type Ban struct {
	Target
	Reason  string
	Source  Source
	Created time.Time
	// Expires is when the ban lifts; zero: never (manual bans only).
	Expires time.Time
}

// Errors of the ban list.
var (
	ErrNotBanned = errors.New("guard: no such ban")
	ErrFull      = errors.New("guard: too many manual bans")
)

// InvalidBanError is a ban that cannot be added; Field names what is
// wrong with it.
type InvalidBanError struct {
	Field, Problem string
}

func (e *InvalidBanError) Error() string {
	return fmt.Sprintf("guard: invalid ban: %s %s", e.Field, e.Problem)
}

// banList holds the bans. Lookups run under a read lock, after a
// lock-free check that the list is not empty; expired entries are
// treated as absent and removed when the list is next written or
// listed, so no timer runs per ban.
type banList struct {
	n atomic.Int64 // entries held, expired or not

	mu  sync.RWMutex
	ids map[string]entry
	// nets holds address bans by masked prefix; lens counts them per
	// prefix length and family, so a lookup tries only the lengths in
	// use (one, /32 or /64, unless an operator bans wider prefixes).
	nets   map[netip.Prefix]entry
	lens4  [33]int32
	lens6  [129]int32
	auto   int // automatic entries held
	manual int
	// swept is when makeRoom last swept the whole list.
	swept int64

	maxAuto, maxManual int
}

// entry is a ban as held: times in Unix nanoseconds (expires 0: never).
type entry struct {
	reason           string
	source           Source
	created, expires int64
	// shared: the ban is known to be in the cluster's ban store (Shared),
	// so its absence from the store means it was lifted elsewhere. An
	// automatic ban is not shared until its write has committed.
	shared bool
}

// same reports whether e and o are the same ban (sharing aside).
func (e entry) same(o entry) bool {
	return e.reason == o.reason && e.source == o.source && e.created == o.created && e.expires == o.expires
}

func newBanList(maxAuto, maxManual int) *banList {
	return &banList{ids: make(map[string]entry), nets: make(map[netip.Prefix]entry),
		maxAuto: max(maxAuto, 1), maxManual: max(maxManual, 1)}
}

func (e entry) live(now int64) bool { return e.expires == 0 || e.expires > now }

// identityBanned and addressBanned read the clock only on a hit (to
// check its expiry): a miss costs a map lookup, no more.
func (l *banList) identityBanned(id string, now func() time.Time) bool {
	if l.n.Load() == 0 {
		return false
	}
	l.mu.RLock()
	e, ok := l.ids[id]
	l.mu.RUnlock()
	return ok && (e.expires == 0 || e.expires > now().UnixNano())
}

func (l *banList) addressBanned(a netip.Addr, now func() time.Time) bool {
	if l.n.Load() == 0 || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	l.mu.RLock()
	defer l.mu.RUnlock()
	lens := l.lens6[:]
	if a.Is4() {
		lens = l.lens4[:]
	}
	for bits, n := range lens {
		if n == 0 {
			continue
		}
		p, _ := a.Prefix(bits)
		if e, ok := l.nets[p]; ok && (e.expires == 0 || e.expires > now().UnixNano()) {
			return true
		}
	}
	return false
}

// put adds or replaces a ban and reports whether it did. An automatic
// ban never shortens or replaces a manual one.
func (l *banList) put(t Target, e entry, now int64) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, had := l.get(t)
	if had && old.live(now) && old.source == SourceManual && e.source == SourceAuto {
		return false, nil
	}
	if err := l.set(t, old, had, e, now); err != nil {
		return false, err
	}
	return true, nil
}

// set puts e in place of t's entry old (had: there is one); the caller
// holds the write lock.
func (l *banList) set(t Target, old entry, had bool, e entry, now int64) error {
	if !had {
		if err := l.makeRoom(e.source, now); err != nil {
			return err
		}
	} else {
		l.drop(t, old)
	}
	if t.Identity != "" {
		l.ids[t.Identity] = e
	} else {
		l.nets[t.Prefix] = e
		l.lens(t.Prefix.Addr())[t.Prefix.Bits()]++
	}
	if e.source == SourceAuto {
		l.auto++
	} else {
		l.manual++
	}
	l.n.Add(1)
	return nil
}

func (l *banList) get(t Target) (entry, bool) {
	if t.Identity != "" {
		e, ok := l.ids[t.Identity]
		return e, ok
	}
	e, ok := l.nets[t.Prefix]
	return e, ok
}

func (l *banList) lens(a netip.Addr) []int32 {
	if a.Is4() {
		return l.lens4[:]
	}
	return l.lens6[:]
}

// drop removes t's entry e; the caller holds the write lock.
func (l *banList) drop(t Target, e entry) {
	if t.Identity != "" {
		delete(l.ids, t.Identity)
	} else {
		delete(l.nets, t.Prefix)
		l.lens(t.Prefix.Addr())[t.Prefix.Bits()]--
	}
	if e.source == SourceAuto {
		l.auto--
	} else {
		l.manual--
	}
	l.n.Add(-1)
}

// makeRoom makes room for one more ban of source s: expired entries go
// first, then (automatic bans only) the one that expires soonest among
// a sample. The sweep is O(bans), so it runs only when the list is full
// and at most once a second: an attacker keeping the list full of live
// bans gets sampled evictions, O(1) each.
func (l *banList) makeRoom(s Source, now int64) error {
	full := func() bool {
		if s == SourceAuto {
			return l.auto >= l.maxAuto
		}
		return l.manual >= l.maxManual
	}
	if !full() {
		return nil
	}
	if now-l.swept >= int64(time.Second) {
		l.swept = now
		l.sweep(now)
		if !full() {
			return nil
		}
	}
	if s == SourceManual {
		return ErrFull
	}
	var victim Target
	var ve entry
	found, seen := false, 0
	for id, e := range l.ids {
		if e.source == SourceAuto && (!found || e.expires < ve.expires) {
			victim, ve, found = Target{Identity: id}, e, true
		}
		if seen++; seen >= evictionSample {
			break
		}
	}
	seen = 0
	for p, e := range l.nets {
		if e.source == SourceAuto && (!found || e.expires < ve.expires) {
			victim, ve, found = Target{Prefix: p}, e, true
		}
		if seen++; seen >= evictionSample {
			break
		}
	}
	if found {
		l.drop(victim, ve)
	}
	return nil
}

// evictionSample is how many entries a full table looks at to choose
// one to drop (as Redis's approximated LRU): enough to find an old one,
// few enough to stay O(1).
const evictionSample = 16

// sweep removes expired entries; the caller holds the write lock.
func (l *banList) sweep(now int64) {
	for id, e := range l.ids {
		if !e.live(now) {
			l.drop(Target{Identity: id}, e)
		}
	}
	for p, e := range l.nets {
		if !e.live(now) {
			l.drop(Target{Prefix: p}, e)
		}
	}
}

func (l *banList) remove(t Target, now int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.get(t)
	if !ok {
		return ErrNotBanned
	}
	l.drop(t, e)
	if !e.live(now) {
		return ErrNotBanned
	}
	return nil
}

// list returns the bans in force, oldest first.
func (l *banList) list(now int64) []Ban {
	l.mu.Lock()
	l.sweep(now)
	out := make([]Ban, 0, len(l.ids)+len(l.nets))
	for id, e := range l.ids {
		out = append(out, e.ban(Target{Identity: id}))
	}
	for p, e := range l.nets {
		out = append(out, e.ban(Target{Prefix: p}))
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Target.String() < out[j].Target.String()
	})
	return out
}

func (e entry) ban(t Target) Ban {
	b := Ban{Target: t, Reason: e.reason, Source: e.source, Created: time.Unix(0, e.created).UTC()}
	if e.expires != 0 {
		b.Expires = time.Unix(0, e.expires).UTC()
	}
	return b
}

// Syncing with a cluster's ban store (Shared).

// markShared records that the automatic ban e of t is in the store now,
// if t's entry is still e.
func (l *banList) markShared(t Target, e entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.get(t); ok && cur.same(e) {
		cur.shared = true
		l.store(t, cur)
	}
}

// holds reports whether t's entry is e (it was neither replaced nor
// lifted).
func (l *banList) holds(t Target, e entry) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cur, ok := l.get(t)
	return ok && cur.same(e)
}

// store overwrites t's existing entry in place (counts unchanged); the
// caller holds the write lock.
func (l *banList) store(t Target, e entry) {
	if t.Identity != "" {
		l.ids[t.Identity] = e
	} else {
		l.nets[t.Prefix] = e
	}
}

// syncResult counts what a sync changed.
type syncResult struct {
	Added, Replaced, Lifted, Refused int
}

// sync makes the list match the store's bans (as listed): a stored ban
// is added or replaces the entry held, and a shared entry the store no
// longer holds is lifted (elsewhere, or it expired). Entries not yet
// shared (automatic bans whose write is pending, or was dropped) stay,
// unless the store holds a ban of their target that wins: a manual one,
// or an automatic one that lasts longer.
func (l *banList) sync(stored []Ban, now int64) syncResult {
	var res syncResult
	want := make(map[Target]entry, len(stored))
	for _, b := range stored {
		e := entryOf(b)
		if e.live(now) {
			want[b.Target] = e
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, e := range l.ids {
		if t := (Target{Identity: id}); !e.live(now) || e.shared && !has(want, t) {
			l.drop(t, e)
			res.Lifted += boolInt(e.live(now))
		}
	}
	for p, e := range l.nets {
		if t := (Target{Prefix: p}); !e.live(now) || e.shared && !has(want, t) {
			l.drop(t, e)
			res.Lifted += boolInt(e.live(now))
		}
	}
	for t, e := range want {
		cur, had := l.get(t)
		switch {
		case had && cur.same(e):
			if !cur.shared {
				cur.shared = true
				l.store(t, cur)
			}
			continue
		case had && !cur.shared && cur.source == SourceAuto && e.source == SourceAuto && cur.expires >= e.expires:
			continue // this node's newer ban, on its way to the store
		}
		if err := l.set(t, cur, had, e, now); err != nil {
			res.Refused++
			continue
		}
		if had {
			res.Replaced++
		} else {
			res.Added++
		}
	}
	return res
}

func has(m map[Target]entry, t Target) bool { _, ok := m[t]; return ok }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// entryOf is b as held, shared (it came from the store).
func entryOf(b Ban) entry {
	e := entry{reason: b.Reason, source: b.Source, created: b.Created.UnixNano(), shared: true}
	if !b.Expires.IsZero() {
		e.expires = b.Expires.UnixNano()
	}
	return e
}

// room reports ErrFull if a manual ban of t could not be added now
// (the manual bans are at their cap and t has none).
func (l *banList) room(t Target, now int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, had := l.get(t); had || l.manual < l.maxManual {
		return nil
	}
	l.sweep(now)
	if l.manual >= l.maxManual {
		return ErrFull
	}
	return nil
}
