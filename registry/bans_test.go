package registry

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/guard"
)

// sharedGuards runs a Shared guard over each of two registries on one
// store and one bus, as two nodes of a cluster.
func sharedGuards(t *testing.T, clock *fakeClock, cfg guard.Config) (ga, gb *guard.Shared, a, b *Registry) {
	t.Helper()
	a, b, _ = twoNodes(t, clock)
	if clock != nil {
		cfg.Now = clock.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	t.Cleanup(func() { cancel(); <-done; <-done })
	run := func(r *Registry) *guard.Shared {
		g := guard.NewShared(cfg, r, guard.SharedOptions{Resync: time.Hour})
		go func() { _ = g.Run(ctx); done <- struct{}{} }()
		return g
	}
	return run(a), run(b), a, b
}

// within polls cond for up to a second: the cluster's promise.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 1 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A manual ban through one node is enforced and listed by the other
// after the notice; lifting it through the other lifts it on the first.
func TestSharedBanReachesTheOtherNode(t *testing.T) {
	ga, gb, _, _ := sharedGuards(t, nil, guard.Config{})
	ctx := context.Background()
	if err := ga.Ban(ctx, guard.Ban{Target: guard.Target{Identity: "dev_1"}, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	if !ga.IdentityBanned("dev_1") {
		t.Fatal("the banning node does not enforce its own ban")
	}
	within(t, "node b enforces node a's ban", func() bool { return gb.IdentityBanned("dev_1") })
	bans, err := gb.Bans(ctx)
	if err != nil || len(bans) != 1 || bans[0].Identity != "dev_1" || bans[0].Source != guard.SourceManual || bans[0].Reason != "stolen" {
		t.Fatalf("node b lists %+v %v", bans, err)
	}

	net := netip.MustParsePrefix("192.0.2.0/24")
	if err := gb.Ban(ctx, guard.Ban{Target: guard.Target{Prefix: net}, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	within(t, "node a enforces node b's address ban", func() bool { return ga.AddressBanned(netip.MustParseAddr("192.0.2.9")) })

	if err := gb.Unban(ctx, guard.Target{Identity: "dev_1"}); err != nil {
		t.Fatal(err)
	}
	within(t, "node a lifts the ban lifted through node b", func() bool { return !ga.IdentityBanned("dev_1") })
	if err := ga.Unban(ctx, guard.Target{Identity: "dev_1"}); !errors.Is(err, guard.ErrNotBanned) {
		t.Fatalf("lifting it again through node a: %v, want ErrNotBanned", err)
	}
	if !ga.AddressBanned(netip.MustParseAddr("192.0.2.9")) {
		t.Fatal("lifting one ban lifted another")
	}
}

// An automatic ban on one node (failed authentications) is written in the
// background and enforced by the other node; the failures before it are
// counted per node.
func TestSharedAutomaticBan(t *testing.T) {
	cfg := guard.Config{IdentityFailures: guard.Window{Max: 3, Window: time.Minute, Ban: time.Hour}}
	ga, gb, a, _ := sharedGuards(t, nil, cfg)
	for i := range 3 {
		if banned := ga.AuthFailed("victim", netip.Addr{}); banned != (i == 2) {
			t.Fatalf("failure %d: banned %v", i+1, banned)
		}
	}
	within(t, "node b enforces node a's automatic ban", func() bool { return gb.IdentityBanned("victim") })
	stored, err := a.ListBans(context.Background())
	if err != nil || len(stored) != 1 || stored[0].Source != guard.SourceAuto || stored[0].Reason != guard.ReasonIdentityFailures {
		t.Fatalf("stored bans %+v %v", stored, err)
	}
	// The failures that led to it stayed node a's.
	if gb.AuthFailed("other", netip.Addr{}) || gb.AuthFailed("other", netip.Addr{}) {
		t.Fatal("node b banned after 2 failures of a limit of 3")
	}
}

// The store keeps a manual ban in force against an automatic one, and
// ignores, refuses to lift and sweeps expired bans.
func TestBanStoreRules(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a, b, _ := twoNodes(t, clock)
	ctx := context.Background()
	now := clock.Now()
	id := guard.Target{Identity: "dev"}
	manual := guard.Ban{Target: id, Reason: "by hand", Source: guard.SourceManual, Created: now, Expires: now.Add(time.Hour)}
	if err := a.PutBan(ctx, manual); err != nil {
		t.Fatal(err)
	}
	auto := guard.Ban{Target: id, Reason: guard.ReasonFlapping, Source: guard.SourceAuto, Created: now, Expires: now.Add(5 * time.Minute)}
	if err := b.PutBan(ctx, auto); err != nil {
		t.Fatal(err)
	}
	addr := guard.Ban{Target: guard.Target{Prefix: netip.MustParsePrefix("2001:db8::/64")}, Source: guard.SourceAuto,
		Created: now, Expires: now.Add(2 * time.Minute)}
	if err := b.PutBan(ctx, addr); err != nil {
		t.Fatal(err)
	}
	bans, err := b.ListBans(ctx)
	if err != nil || len(bans) != 2 {
		t.Fatalf("listed %+v %v, want 2 bans", bans, err)
	}
	for _, got := range bans {
		want := manual
		if got.Identity == "" {
			want = addr
		}
		if got.Target != want.Target || got.Source != want.Source || got.Reason != want.Reason ||
			!got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) {
			t.Fatalf("listed %+v, want %+v", got, want)
		}
	}

	clock.Advance(3 * time.Minute) // the address ban expired
	if bans, _ := a.ListBans(ctx); len(bans) != 1 || bans[0].Identity != "dev" {
		t.Fatalf("after the address ban expired: %+v", bans)
	}
	if n, err := a.sweepBans(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v, want the 1 expired record deleted", n, err)
	}
	if err := a.DeleteBan(ctx, addr.Target); !errors.Is(err, guard.ErrNotBanned) {
		t.Fatalf("lifting a swept ban: %v, want ErrNotBanned", err)
	}

	clock.Advance(time.Hour) // the manual one expired, not yet swept
	if err := b.DeleteBan(ctx, id); !errors.Is(err, guard.ErrNotBanned) {
		t.Fatalf("lifting an expired ban: %v, want ErrNotBanned", err)
	}
	if err := b.PutBan(ctx, auto); err != nil { // nothing in force: an automatic ban is stored
		t.Fatal(err)
	}
	if bans, _ := a.ListBans(ctx); len(bans) != 0 { // auto expired too (created at the old now)
		t.Fatalf("listed %+v, want none in force", bans)
	}
}

// The ban watchers are told of other nodes' writes to the ban family only,
// and of lost notices.
func TestBanWatchers(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := context.Background()
	told := 0
	b.WatchBans(func() { told++ })
	mustProduct(t, a, "proj", "prod", "MQTT")
	if told != 0 {
		t.Fatalf("told %d times of a product write", told)
	}
	now := time.Now()
	if err := a.PutBan(ctx, guard.Ban{Target: guard.Target{Identity: "x"}, Source: guard.SourceManual, Created: now}); err != nil {
		t.Fatal(err)
	}
	if told != 1 {
		t.Fatalf("told %d times of a ban, want 1", told)
	}
	if err := a.DeleteBan(ctx, guard.Target{Identity: "x"}); err != nil {
		t.Fatal(err)
	}
	if told != 2 {
		t.Fatalf("told %d times after a lifted ban, want 2", told)
	}
	b.invalidated(nil)
	if told != 3 {
		t.Fatalf("told %d times after lost notices, want 3", told)
	}
}

// A node that missed the notice of a ban (cut off the bus) reloads the
// list when told notices were lost.
func TestSharedBanAfterLostNotices(t *testing.T) {
	ga, gb, _, b := sharedGuards(t, nil, guard.Config{})
	ctx := context.Background()
	// Let b's guard finish its first load and the reload a notice starts,
	// so that no reload of b's runs after it is cut off.
	if err := ga.Ban(ctx, guard.Ban{Target: guard.Target{Identity: "warm_up"}}); err != nil {
		t.Fatal(err)
	}
	within(t, "b learns of a ban through the bus", func() bool { return gb.IdentityBanned("warm_up") })
	time.Sleep(100 * time.Millisecond)
	b.inval.(*busNode).deaf.Store(true)
	if err := ga.Ban(ctx, guard.Ban{Target: guard.Target{Identity: "dev_1"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if gb.IdentityBanned("dev_1") {
		t.Fatal("a node cut off the bus learnt of the ban: the test would prove nothing")
	}
	b.inval.(*busNode).deaf.Store(false)
	b.invalidated(nil) // what the bus reports when it is back
	within(t, "the node that missed the notice enforces the ban", func() bool { return gb.IdentityBanned("dev_1") })
}
