package guard

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestGuard(t *testing.T, mod func(*Config)) (*Local, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
	cfg := Defaults()
	cfg.Now = c.now
	if mod != nil {
		mod(&cfg)
	}
	return NewLocal(cfg), c
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

func TestIdentityFailuresBanAtThreshold(t *testing.T) {
	g, c := newTestGuard(t, nil)
	for i := 1; i < 15; i++ {
		if g.AuthFailed("dev1", addrA) {
			t.Fatalf("failure %d banned; the limit is 15", i)
		}
		c.advance(time.Second)
	}
	if g.IdentityBanned("dev1") {
		t.Fatal("banned before the 15th failure")
	}
	if !g.AuthFailed("dev1", addrA) || !g.IdentityBanned("dev1") {
		t.Fatal("the 15th failure in a minute did not ban the identity")
	}
	if g.AddressBanned(addrA) {
		t.Fatal("15 failures banned the address; its limit is 100")
	}
	if g.IdentityBanned("dev2") {
		t.Fatal("another identity is banned")
	}
	c.advance(5*time.Minute - time.Second)
	if !g.IdentityBanned("dev1") {
		t.Fatal("the ban lifted before 5 minutes")
	}
	c.advance(time.Second)
	if g.IdentityBanned("dev1") {
		t.Fatal("the ban did not lift after 5 minutes")
	}
	// The count started over with the ban.
	if g.AuthFailed("dev1", addrA) {
		t.Fatal("the first failure after a ban banned again")
	}
}

func TestFailuresSlide(t *testing.T) {
	tests := []struct {
		name   string
		gap    time.Duration // between failures
		banned bool
	}{
		{"15 in 14 s", time.Second, true},
		{"15 in 56 s", 4 * time.Second, true},
		{"15 in 70 s", 5 * time.Second, false},
		{"15 in 7 min", 30 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, c := newTestGuard(t, nil)
			for range 15 {
				g.AuthFailed("dev1", netip.Addr{})
				c.advance(tt.gap)
			}
			c.advance(-tt.gap)
			if got := g.IdentityBanned("dev1"); got != tt.banned {
				t.Fatalf("banned = %v, want %v", got, tt.banned)
			}
		})
	}
}

func TestAddressFailures(t *testing.T) {
	tests := []struct {
		name    string
		addr    func(i int) netip.Addr
		probe   netip.Addr
		neutral netip.Addr // must stay unbanned
	}{
		{"IPv4 address", func(int) netip.Addr { return addrA }, addrA, addrB},
		{"IPv4-mapped counts as IPv4", func(int) netip.Addr { return netip.MustParseAddr("::ffff:192.0.2.1") }, addrA, addrB},
		{"IPv6 by /64", func(i int) netip.Addr {
			return netip.MustParseAddr("2001:db8:1:2::" + strconv.FormatInt(int64(i+1), 16))
		}, netip.MustParseAddr("2001:db8:1:2:ffff::1"), netip.MustParseAddr("2001:db8:1:3::1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newTestGuard(t, nil)
			banned := false
			for i := range 100 {
				// A different identity each time: only the address limit applies.
				banned = g.AuthFailed("dev"+strconv.Itoa(i), tt.addr(i))
				if banned && i < 99 {
					t.Fatalf("failure %d banned; the limit is 100", i+1)
				}
			}
			if !banned || !g.AddressBanned(tt.probe) {
				t.Fatal("100 failures did not ban the address")
			}
			if g.AddressBanned(tt.neutral) {
				t.Fatalf("%v is banned too", tt.neutral)
			}
		})
	}
}

func TestFlapping(t *testing.T) {
	g, c := newTestGuard(t, func(cfg *Config) { cfg.Flapping = Window{Max: 3, Window: time.Minute, Ban: time.Minute} })
	for i := range 2 {
		if !g.Connected("dev1") {
			t.Fatalf("connect %d refused", i+1)
		}
	}
	if g.Connected("dev1") || !g.IdentityBanned("dev1") {
		t.Fatal("the 3rd connect in a minute was not refused")
	}
	c.advance(time.Minute)
	if !g.Connected("dev1") {
		t.Fatal("a connect after the ban was refused")
	}
	g, _ = newTestGuard(t, func(cfg *Config) { cfg.Flapping = Window{} })
	for range 100 {
		if !g.Connected("dev1") {
			t.Fatal("flapping detection refused a connect while disabled")
		}
	}
}

func TestManualBans(t *testing.T) {
	ctx := context.Background()
	g, c := newTestGuard(t, nil)
	bans := []Ban{
		{Target: Target{Identity: "dev1"}, Reason: "stolen"},
		{Target: Target{Prefix: netip.MustParsePrefix("10.1.2.3/8")}, Reason: "abuse", Expires: c.t.Add(time.Hour)},
		{Target: Target{Prefix: netip.MustParsePrefix("2001:db8::/32")}},
	}
	for _, b := range bans {
		if err := g.Ban(ctx, b); err != nil {
			t.Fatalf("Ban(%v): %v", b.Target, err)
		}
	}
	checks := []struct {
		addr   string
		banned bool
	}{
		{"10.200.0.1", true}, {"::ffff:10.0.0.1", true}, {"11.0.0.1", false},
		{"2001:db8:ffff::1", true}, {"2001:db9::1", false},
	}
	for _, ck := range checks {
		if got := g.AddressBanned(netip.MustParseAddr(ck.addr)); got != ck.banned {
			t.Errorf("AddressBanned(%s) = %v, want %v", ck.addr, got, ck.banned)
		}
	}
	if !g.IdentityBanned("dev1") {
		t.Error("manual identity ban not in force")
	}
	// Same creation time: listed by target.
	list, _ := g.Bans(ctx)
	if len(list) != 3 || list[0].Prefix.String() != "10.0.0.0/8" || list[0].Source != SourceManual ||
		!list[0].Expires.Equal(c.t.Add(time.Hour)) || list[2].Identity != "dev1" {
		t.Fatalf("Bans = %+v", list)
	}
	// An automatic ban does not replace a manual one.
	for range 15 {
		g.AuthFailed("dev1", netip.Addr{})
	}
	list, _ = g.Bans(ctx)
	if list[2].Source != SourceManual || list[2].Reason != "stolen" || !list[2].Expires.IsZero() {
		t.Fatalf("the automatic ban replaced the manual one: %+v", list[2])
	}
	if err := g.Unban(ctx, Target{Prefix: netip.MustParsePrefix("10.9.9.9/8")}); err != nil {
		t.Fatalf("Unban: %v", err)
	}
	if g.AddressBanned(netip.MustParseAddr("10.200.0.1")) {
		t.Fatal("unbanned prefix still banned")
	}
	if err := g.Unban(ctx, Target{Identity: "nobody"}); !errors.Is(err, ErrNotBanned) {
		t.Fatalf("Unban(nobody) = %v, want ErrNotBanned", err)
	}
	c.advance(2 * time.Hour)
	list, _ = g.Bans(ctx)
	if len(list) != 2 {
		t.Fatalf("after 2 h: %d bans, want the 2 permanent ones", len(list))
	}
}

func TestInvalidBans(t *testing.T) {
	g, c := newTestGuard(t, nil)
	tests := []struct {
		name string
		ban  Ban
	}{
		{"empty target", Ban{}},
		{"both", Ban{Target: Target{Identity: "d", Prefix: netip.MustParsePrefix("10.0.0.0/8")}}},
		{"expired", Ban{Target: Target{Identity: "d"}, Expires: c.t.Add(-time.Second)}},
		{"short mapped prefix", Ban{Target: Target{Prefix: netip.MustParsePrefix("::ffff:10.0.0.0/90")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ie *InvalidBanError
			if err := g.Ban(context.Background(), tt.ban); !errors.As(err, &ie) {
				t.Fatalf("Ban = %v, want an InvalidBanError", err)
			}
		})
	}
}

func TestMemoryIsBounded(t *testing.T) {
	g, _ := newTestGuard(t, func(cfg *Config) {
		cfg.MaxTracked, cfg.MaxBans, cfg.MaxManualBans = 100, 50, 2
		cfg.AddressFailures.Max = 2
	})
	// An attacker with 10,000 addresses and identities.
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.AuthFailed("dev"+strconv.Itoa(i), a)
		g.AuthFailed("dev"+strconv.Itoa(i), a)
	}
	if n := len(g.idFails.m); n > 100 {
		t.Errorf("%d identities tracked, cap 100", n)
	}
	if n := len(g.netFails.m); n > 100 {
		t.Errorf("%d addresses tracked, cap 100", n)
	}
	if g.bans.auto > 50 || g.bans.n.Load() > 50 {
		t.Errorf("%d automatic bans held, cap 50", g.bans.auto)
	}
	// The most recent offender is banned: eviction drops older ones.
	if !g.AddressBanned(netip.AddrFrom4([4]byte{10, 0, 39, 15})) {
		t.Error("the latest offender is not banned")
	}
	ctx := context.Background()
	for i := range 2 {
		if err := g.Ban(ctx, Ban{Target: Target{Identity: "m" + strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Ban(ctx, Ban{Target: Target{Identity: "m3"}}); !errors.Is(err, ErrFull) {
		t.Fatalf("a manual ban past the cap: %v, want ErrFull", err)
	}
}

func TestChecksDoNotAllocate(t *testing.T) {
	g, _ := newTestGuard(t, nil)
	ctx := context.Background()
	_ = g.Ban(ctx, Ban{Target: Target{Identity: "dev1"}})
	_ = g.Ban(ctx, Ban{Target: Target{Prefix: netip.MustParsePrefix("2001:db8::/48")}})
	g.AuthFailed("", addrA)
	a6 := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() {
		g.IdentityBanned("dev1")
		g.IdentityBanned("dev2")
		g.AddressBanned(addrA)
		g.AddressBanned(a6)
	}); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

func TestThrottle(t *testing.T) {
	th := NewThrottle(1, 3)
	var written int
	var suppressed uint64
	for range 10 {
		if ok, s := th.Allow(); ok {
			written++
			suppressed += s
		}
	}
	if written != 3 {
		t.Fatalf("%d lines written of 10 in a burst of 3", written)
	}
	time.Sleep(1100 * time.Millisecond)
	// While the bucket is empty, only every 16th line asks it: one of
	// the next 16 is written, with the count of every line before it.
	for i := range checkEvery {
		if ok, s := th.Allow(); ok {
			if want := uint64(7 + i); s != want {
				t.Fatalf("%d suppressed reported, want %d", s, want)
			}
			break
		}
		if i == checkEvery-1 {
			t.Fatal("no line written after a second")
		}
	}
	th = NewThrottle(0, 0)
	for range 100 {
		if ok, _ := th.Allow(); !ok {
			t.Fatal("an unlimited throttle refused a line")
		}
	}
}

func BenchmarkChecks(b *testing.B) {
	g := NewLocal(Defaults())
	_ = g.Ban(context.Background(), Ban{Target: Target{Identity: "dev1"}})
	b.ReportAllocs()
	for b.Loop() {
		g.AddressBanned(addrA)
		g.IdentityBanned("dev1")
	}
}

// A long identity is kept by its first MaxIdentityBytes bytes, so each
// tracked key stays small; its ban applies to the long form.
func TestLongIdentities(t *testing.T) {
	g, _ := newTestGuard(t, nil)
	long := strings.Repeat("x", 8<<10)
	for range 15 {
		g.AuthFailed(long, netip.Addr{})
	}
	if !g.IdentityBanned(long) {
		t.Fatal("a long identity was not banned")
	}
	for k := range g.bans.ids {
		if len(k) > MaxIdentityBytes {
			t.Fatalf("a %d-byte identity is held", len(k))
		}
	}
	err := g.Ban(context.Background(), Ban{Target: Target{Identity: long}})
	var ie *InvalidBanError
	if !errors.As(err, &ie) {
		t.Fatalf("a manual ban of a long identity: %v", err)
	}
}

// With the list full of live bans, new automatic bans evict sampled old
// ones instead of sweeping the whole list each time.
func TestFullBanListEvicts(t *testing.T) {
	g, c := newTestGuard(t, func(cfg *Config) { cfg.MaxBans = 10 })
	for i := range 100 {
		for range 15 {
			g.AuthFailed("dev"+strconv.Itoa(i), netip.Addr{})
		}
		c.advance(time.Millisecond)
	}
	if g.bans.auto != 10 || !g.IdentityBanned("dev99") {
		t.Fatalf("%d automatic bans held (want 10), latest banned: %v", g.bans.auto, g.IdentityBanned("dev99"))
	}
}

func TestAutoBansCounted(t *testing.T) {
	g, _ := newTestGuard(t, func(cfg *Config) {
		cfg.IdentityFailures = Window{Max: 2, Window: time.Minute, Ban: time.Minute}
		cfg.AddressFailures = Window{Max: 3, Window: time.Minute, Ban: time.Minute}
		cfg.Flapping = Window{Max: 2, Window: time.Minute, Ban: time.Minute}
	})
	// dev1 fails twice from A (banned); dev2 once from A: the third
	// failure from A bans the address.
	g.AuthFailed("dev1", addrA)
	g.AuthFailed("dev1", addrA)
	g.AuthFailed("dev2", addrA)
	g.Connected("dev3")
	g.Connected("dev3")
	if err := g.Ban(context.Background(), Ban{Target: Target{Identity: "dev4"}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"identity_failures": 1, "address_failures": 1, "flapping": 1}
	got := g.AutoBans()
	if len(got) != len(want) {
		t.Fatalf("auto bans %v, want %v (a manual ban is not automatic)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("auto bans %v, want %v", got, want)
		}
	}
}
