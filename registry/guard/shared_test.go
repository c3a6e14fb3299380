package guard

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeStore is a BanStore in memory, with the store's rules (an automatic
// ban never replaces a manual one in force) and errors on demand.
type fakeStore struct {
	mu    sync.Mutex
	bans  map[Target]Ban
	err   error // returned by every call while set
	watch func()
	now   func() time.Time
	lists int
}

func newFakeStore(now func() time.Time) *fakeStore {
	return &fakeStore{bans: map[Target]Ban{}, now: now}
}

func (s *fakeStore) PutBan(_ context.Context, b Ban) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if old, ok := s.bans[b.Target]; ok && old.Source == SourceManual && b.Source == SourceAuto &&
		(old.Expires.IsZero() || old.Expires.After(s.now())) {
		return nil
	}
	s.bans[b.Target] = b
	return nil
}

func (s *fakeStore) DeleteBan(_ context.Context, t Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, ok := s.bans[t]; !ok {
		return ErrNotBanned
	}
	delete(s.bans, t)
	return nil
}

// ListBans lists every record, expired ones too: the guard must skip them.
func (s *fakeStore) ListBans(context.Context) ([]Ban, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	if s.err != nil {
		return nil, s.err
	}
	return slices.Collect(maps.Values(s.bans)), nil
}

func (s *fakeStore) WatchBans(fn func()) { s.watch = fn }

func (s *fakeStore) set(bans ...Ban) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.bans)
	for _, b := range bans {
		s.bans[b.Target] = b
	}
}

func (s *fakeStore) has(t Target) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.bans[t]
	return ok
}

func newTestShared(t *testing.T, o SharedOptions) (*Shared, *fakeStore, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
	cfg := Defaults()
	cfg.Now = c.now
	cfg.IdentityFailures = Window{Max: 2, Window: time.Minute, Ban: 5 * time.Minute}
	st := newFakeStore(c.now)
	return NewShared(cfg, st, o), st, c
}

// drain writes the queued automatic bans, as Run does.
func drain(g *Shared) {
	for {
		select {
		case b := <-g.queue:
			g.write(context.Background(), b)
		default:
			return
		}
	}
}

var (
	tDev   = Target{Identity: "dev"}
	tOther = Target{Identity: "other"}
	tNet   = Target{Prefix: netip.MustParsePrefix("198.51.100.0/24")}
)

// banned is what a test expects the guard to hold of a target.
type banned struct {
	Target
	Source  Source
	Reason  string
	Expires time.Duration // from the test's start; 0: never
}

func TestSharedReload(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	ban := func(tg Target, s Source, reason string, created, expires time.Duration) Ban {
		b := Ban{Target: tg, Source: s, Reason: reason, Created: start.Add(created)}
		if expires != 0 {
			b.Expires = start.Add(expires)
		}
		return b
	}
	cases := []struct {
		name string
		// before runs on the guard before the store holds stored (it may
		// reload to share bans, then change the store).
		before func(g *Shared, st *fakeStore)
		stored []Ban
		want   []banned
	}{{
		name:   "stored bans are added, of both kinds",
		stored: []Ban{ban(tDev, SourceManual, "by hand", 0, 0), ban(tNet, SourceAuto, ReasonAddressFailures, 0, time.Hour)},
		want:   []banned{{tDev, SourceManual, "by hand", 0}, {tNet, SourceAuto, ReasonAddressFailures, time.Hour}},
	}, {
		name:   "expired bans are skipped",
		stored: []Ban{ban(tDev, SourceManual, "old", -2*time.Hour, -time.Hour), ban(tOther, SourceAuto, ReasonFlapping, -time.Hour, -time.Second)},
	}, {
		name: "a ban lifted elsewhere is lifted",
		before: func(g *Shared, st *fakeStore) {
			st.set(ban(tDev, SourceManual, "by hand", 0, 0), ban(tNet, SourceManual, "net", 0, 0))
			_ = g.Reload(ctx)
		},
		stored: []Ban{ban(tNet, SourceManual, "net", 0, 0)},
		want:   []banned{{tNet, SourceManual, "net", 0}},
	}, {
		name: "a ban changed elsewhere is replaced",
		before: func(g *Shared, st *fakeStore) {
			st.set(ban(tDev, SourceManual, "first", 0, time.Hour))
			_ = g.Reload(ctx)
		},
		stored: []Ban{ban(tDev, SourceManual, "second", time.Second, 2*time.Hour)},
		want:   []banned{{tDev, SourceManual, "second", 2 * time.Hour}},
	}, {
		name: "a manual ban lifted elsewhere and replaced by an automatic one",
		before: func(g *Shared, st *fakeStore) {
			st.set(ban(tDev, SourceManual, "by hand", 0, 0))
			_ = g.Reload(ctx)
		},
		stored: []Ban{ban(tDev, SourceAuto, ReasonFlapping, time.Second, time.Hour)},
		want:   []banned{{tDev, SourceAuto, ReasonFlapping, time.Hour}},
	}, {
		name:   "this node's automatic ban not yet written stays",
		before: func(g *Shared, _ *fakeStore) { g.AuthFailed("dev", netip.Addr{}); g.AuthFailed("dev", netip.Addr{}) },
		want:   []banned{{tDev, SourceAuto, ReasonIdentityFailures, 5 * time.Minute}},
	}, {
		name:   "a stored automatic ban that lasts longer replaces this node's unwritten one",
		before: func(g *Shared, _ *fakeStore) { g.AuthFailed("dev", netip.Addr{}); g.AuthFailed("dev", netip.Addr{}) },
		stored: []Ban{ban(tDev, SourceAuto, ReasonFlapping, 0, time.Hour)},
		want:   []banned{{tDev, SourceAuto, ReasonFlapping, time.Hour}},
	}, {
		name:   "this node's unwritten automatic ban outlasting the stored one stays",
		before: func(g *Shared, _ *fakeStore) { g.AuthFailed("dev", netip.Addr{}); g.AuthFailed("dev", netip.Addr{}) },
		stored: []Ban{ban(tDev, SourceAuto, ReasonFlapping, -time.Hour, time.Minute)},
		want:   []banned{{tDev, SourceAuto, ReasonIdentityFailures, 5 * time.Minute}},
	}, {
		name:   "a stored manual ban wins over this node's unwritten automatic one",
		before: func(g *Shared, _ *fakeStore) { g.AuthFailed("dev", netip.Addr{}); g.AuthFailed("dev", netip.Addr{}) },
		stored: []Ban{ban(tDev, SourceManual, "by hand", 0, time.Minute)},
		want:   []banned{{tDev, SourceManual, "by hand", time.Minute}},
	}, {
		name: "a written automatic ban lifted elsewhere is lifted",
		before: func(g *Shared, _ *fakeStore) {
			g.AuthFailed("dev", netip.Addr{})
			g.AuthFailed("dev", netip.Addr{})
			drain(g)
		},
		want: nil,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, st, _ := newTestShared(t, SharedOptions{})
			if tc.before != nil {
				tc.before(g, st)
			}
			st.set(tc.stored...)
			if err := g.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			got, _ := g.Bans(ctx)
			var gotView []banned
			for _, b := range got {
				v := banned{Target: b.Target, Source: b.Source, Reason: b.Reason}
				if !b.Expires.IsZero() {
					v.Expires = b.Expires.Sub(start)
				}
				gotView = append(gotView, v)
			}
			less := func(a, b banned) int {
				if a.Target.String() < b.Target.String() {
					return -1
				}
				return 1
			}
			slices.SortFunc(gotView, less)
			want := slices.Clone(tc.want)
			slices.SortFunc(want, less)
			if !slices.Equal(gotView, want) {
				t.Fatalf("holds %+v\nwant   %+v", gotView, want)
			}
			// The checks agree with the listing.
			for _, w := range want {
				if w.Identity != "" && !g.IdentityBanned(w.Identity) {
					t.Fatalf("%s listed but not enforced", w.Identity)
				}
			}
			if len(want) == 0 && g.IdentityBanned("dev") {
				t.Fatal("dev enforced but not listed")
			}
		})
	}
}

// Manual bans go to the store first: a store error is returned and
// nothing changes here.
func TestSharedManualWritesThrough(t *testing.T) {
	ctx := context.Background()
	g, st, _ := newTestShared(t, SharedOptions{})
	down := errors.New("store down")

	st.err = down
	if err := g.Ban(ctx, Ban{Target: tDev}); !errors.Is(err, down) {
		t.Fatalf("ban with the store down: %v", err)
	}
	if g.IdentityBanned("dev") {
		t.Fatal("a ban the store refused holds")
	}
	st.err = nil
	if err := g.Ban(ctx, Ban{Target: tDev, Reason: "by hand", Source: SourceAuto}); err != nil {
		t.Fatal(err)
	}
	if !g.IdentityBanned("dev") || !st.has(tDev) || st.bans[tDev].Source != SourceManual {
		t.Fatalf("after Ban: held %v, stored %+v", g.IdentityBanned("dev"), st.bans)
	}
	if err := g.Ban(ctx, Ban{Target: Target{Identity: "x", Prefix: tNet.Prefix}}); err == nil {
		t.Fatal("an invalid target was accepted")
	}

	st.err = down
	if err := g.Unban(ctx, tDev); !errors.Is(err, down) {
		t.Fatalf("unban with the store down: %v", err)
	}
	if !g.IdentityBanned("dev") {
		t.Fatal("a lift the store refused took effect")
	}
	st.err = nil
	if err := g.Unban(ctx, tDev); err != nil {
		t.Fatal(err)
	}
	if g.IdentityBanned("dev") || st.has(tDev) {
		t.Fatal("the lifted ban holds")
	}
	if err := g.Unban(ctx, tDev); !errors.Is(err, ErrNotBanned) {
		t.Fatalf("lifting it again: %v, want ErrNotBanned", err)
	}
	// An automatic ban not yet written is lifted here all the same, and
	// its write does not bring it back.
	g.AuthFailed("other", netip.Addr{})
	g.AuthFailed("other", netip.Addr{})
	if err := g.Unban(ctx, tOther); err != nil {
		t.Fatalf("lifting an unwritten automatic ban: %v", err)
	}
	drain(g)
	if g.IdentityBanned("other") || st.has(tOther) {
		t.Fatal("the lifted automatic ban came back with its write")
	}
}

// A manual ban past the cap is refused before anything is written.
func TestSharedManualFull(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
	cfg := Defaults()
	cfg.Now, cfg.MaxManualBans = c.now, 1
	st := newFakeStore(c.now)
	g := NewShared(cfg, st, SharedOptions{})
	if err := g.Ban(ctx, Ban{Target: tDev}); err != nil {
		t.Fatal(err)
	}
	if err := g.Ban(ctx, Ban{Target: tOther}); !errors.Is(err, ErrFull) {
		t.Fatalf("second manual ban of a cap of 1: %v, want ErrFull", err)
	}
	if st.has(tOther) {
		t.Fatal("a ban refused as over the cap was written to the store")
	}
	if err := g.Ban(ctx, Ban{Target: tDev, Reason: "again"}); err != nil {
		t.Fatalf("replacing the one held: %v", err)
	}
}

// Automatic bans hold at once and reach the store only through the
// queue; a full queue drops (counted) and the ban still holds here.
func TestSharedAutomaticQueued(t *testing.T) {
	g, st, _ := newTestShared(t, SharedOptions{Queue: 1})
	g.AuthFailed("dev", netip.Addr{})
	if !g.AuthFailed("dev", netip.Addr{}) || !g.IdentityBanned("dev") {
		t.Fatal("the threshold did not ban")
	}
	if st.has(tDev) {
		t.Fatal("the auth path wrote to the store")
	}
	g.AuthFailed("other", netip.Addr{})
	g.AuthFailed("other", netip.Addr{})
	if g.Dropped() != 1 || !g.IdentityBanned("other") {
		t.Fatalf("queue of 1, two bans: dropped %d, the dropped one held %v", g.Dropped(), g.IdentityBanned("other"))
	}
	drain(g)
	if !st.has(tDev) || st.bans[tDev].Source != SourceAuto || st.has(tOther) {
		t.Fatalf("stored %+v, want dev's automatic ban only", st.bans)
	}

	// A failed write leaves the ban held here, unshared: a reload keeps it.
	st.err = errors.New("store down")
	g.Connected("x") // nothing queued: flapping is far off
	g.AuthFailed("third", netip.Addr{})
	g.AuthFailed("third", netip.Addr{})
	drain(g)
	st.err = nil
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !g.IdentityBanned("third") || !g.IdentityBanned("other") || !g.IdentityBanned("dev") {
		t.Fatal("a reload lifted a ban this node holds")
	}
}

// Run loads the list at start, reloads it when the store says it changed
// and retries a failed reload.
func TestSharedRun(t *testing.T) {
	st := newFakeStore(time.Now)
	st.set(Ban{Target: tDev, Source: SourceManual, Created: time.Now()})
	st.err = errors.New("store down")
	g := NewShared(Defaults(), st, SharedOptions{Retry: 10 * time.Millisecond, Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	time.Sleep(30 * time.Millisecond)
	if g.IdentityBanned("dev") {
		t.Fatal("held a ban the store could not list")
	}
	st.mu.Lock()
	st.err = nil
	st.mu.Unlock()
	waitFor(t, "the retried load", func() bool { return g.IdentityBanned("dev") })

	st.set(Ban{Target: tOther, Source: SourceManual, Created: time.Now()})
	st.watch()
	waitFor(t, "the reload on notice", func() bool { return g.IdentityBanned("other") && !g.IdentityBanned("dev") })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
