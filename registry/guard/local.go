package guard

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// Local is the node-local Guard: counters and ban list in this
// process's memory, bounded by Config's caps, with no goroutine or timer
// (expired entries are dropped lazily). It is safe for concurrent use.
type Local struct {
	cfg      Config
	now      func() time.Time
	bans     *banList
	idFails  *counters[string]
	netFails *counters[netip.Prefix]
	connects *counters[string]
	// onAuto, when set (Shared), is told of each automatic ban added.
	// It runs on the caller's path: it must not block.
	onAuto func(Ban)
	// autoBans counts the automatic bans this guard imposed, by rule
	// (the index of its reason in autoBanRules).
	autoBans [len(autoBanRules)]atomic.Uint64
}

// autoBanRules are the rules that ban automatically: their reasons, and
// the names AutoBans gives them.
var autoBanRules = [...]struct{ reason, name string }{
	{ReasonIdentityFailures, "identity_failures"},
	{ReasonAddressFailures, "address_failures"},
	{ReasonFlapping, "flapping"},
}

// AutoBans counts the automatic bans this node's guard imposed since
// start, by rule: "identity_failures", "address_failures", "flapping".
// Every rule is a key.
func (g *Local) AutoBans() map[string]uint64 {
	m := make(map[string]uint64, len(autoBanRules))
	for i, r := range autoBanRules {
		m[r.name] = g.autoBans[i].Load()
	}
	return m
}

var _ Guard = (*Local)(nil)

// NewLocal returns a node-local guard with cfg's limits.
func NewLocal(cfg Config) *Local {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = Defaults().MaxTracked
	}
	if cfg.MaxBans <= 0 {
		cfg.MaxBans = Defaults().MaxBans
	}
	if cfg.MaxManualBans <= 0 {
		cfg.MaxManualBans = Defaults().MaxManualBans
	}
	return &Local{
		cfg:      cfg,
		now:      cfg.Now,
		bans:     newBanList(cfg.MaxBans, cfg.MaxManualBans),
		idFails:  newCounters(cfg.IdentityFailures, cfg.MaxTracked, strings.Clone),
		netFails: newCounters(cfg.AddressFailures, cfg.MaxTracked, func(p netip.Prefix) netip.Prefix { return p }),
		connects: newCounters(cfg.Flapping, cfg.MaxTracked, strings.Clone),
	}
}

func (g *Local) AddressBanned(addr netip.Addr) bool {
	return g.bans.addressBanned(addr, g.now)
}

func (g *Local) IdentityBanned(identity string) bool {
	if len(identity) > MaxIdentityBytes {
		identity = identity[:MaxIdentityBytes]
	}
	return g.bans.identityBanned(identity, g.now)
}

// Reasons of automatic bans, as the ban list shows them.
const (
	ReasonIdentityFailures = "too many failed authentications of this identity"
	ReasonAddressFailures  = "too many failed authentications from this address"
	ReasonFlapping         = "too many connections of this identity (flapping)"
)

// MaxIdentityBytes is the longest identity the guard keeps: a longer one
// is counted and banned by its first MaxIdentityBytes bytes, so that an
// attacker's long usernames cannot make each tracked key large. No
// protocol's identities come near it.
const MaxIdentityBytes = 256

// trackable is identity as the guard counts and bans it: at most
// MaxIdentityBytes. Stored keys are copied (counters.keep, autoBan), so
// they never pin a packet the identity was sliced from.
func trackable(identity string) string {
	return identity[:min(len(identity), MaxIdentityBytes)]
}

func (g *Local) AuthFailed(identity string, addr netip.Addr) bool {
	identity = trackable(identity)
	now := g.now().UnixNano()
	banned := false
	if w := g.cfg.IdentityFailures; identity != "" && w.enabled() {
		if g.idFails.add(identity, now) >= w.Max {
			g.idFails.reset(identity)
			banned = g.autoBan(Target{Identity: identity}, ReasonIdentityFailures, w, now) || banned
		}
	}
	if w := g.cfg.AddressFailures; addr.IsValid() && w.enabled() {
		k := addressKey(addr)
		if g.netFails.add(k, now) >= w.Max {
			g.netFails.reset(k)
			banned = g.autoBan(Target{Prefix: k}, ReasonAddressFailures, w, now) || banned
		}
	}
	return banned
}

func (g *Local) Connected(identity string) bool {
	w := g.cfg.Flapping
	if identity == "" || !w.enabled() {
		return true
	}
	identity = trackable(identity)
	now := g.now().UnixNano()
	if g.connects.add(identity, now) < w.Max {
		return true
	}
	g.connects.reset(identity)
	g.autoBan(Target{Identity: identity}, ReasonFlapping, w, now)
	return false
}

func (g *Local) autoBan(t Target, reason string, w Window, now int64) bool {
	t.Identity = strings.Clone(t.Identity)
	e := entry{reason: reason, source: SourceAuto, created: now, expires: now + int64(w.Ban)}
	stored, err := g.bans.put(t, e, now)
	if stored {
		for i, r := range autoBanRules {
			if r.reason == reason {
				g.autoBans[i].Add(1)
			}
		}
	}
	if stored && g.onAuto != nil {
		g.onAuto(e.ban(t))
	}
	return err == nil
}

func (g *Local) Bans(context.Context) ([]Ban, error) {
	return g.bans.list(g.now().UnixNano()), nil
}

// Ban adds b as a manual ban (whatever b.Source says); Created is now.
// An address prefix is stored masked; a zero Expires never lifts.
func (g *Local) Ban(_ context.Context, b Ban) error {
	t, err := normalize(b.Target)
	if err != nil {
		return err
	}
	now := g.now()
	if !b.Expires.IsZero() && !b.Expires.After(now) {
		return &InvalidBanError{Field: "expires", Problem: "is not in the future"}
	}
	e := entry{reason: b.Reason, source: SourceManual, created: now.UnixNano()}
	if !b.Expires.IsZero() {
		e.expires = b.Expires.UnixNano()
	}
	_, err = g.bans.put(t, e, now.UnixNano())
	return err
}

func (g *Local) Unban(_ context.Context, t Target) error {
	t, err := normalize(t)
	if err != nil {
		return err
	}
	return g.bans.remove(t, g.now().UnixNano())
}

// normalize checks that t names exactly one thing and masks its prefix.
func normalize(t Target) (Target, error) {
	switch {
	case t.Identity != "" && t.Prefix.IsValid():
		return t, &InvalidBanError{Field: "target", Problem: "names both an identity and an address"}
	case len(t.Identity) > MaxIdentityBytes:
		return t, &InvalidBanError{Field: "identity", Problem: fmt.Sprintf("is longer than %d bytes", MaxIdentityBytes)}
	case t.Identity != "":
		return t, nil
	case !t.Prefix.IsValid():
		return t, &InvalidBanError{Field: "target", Problem: "names neither an identity nor an address"}
	}
	a := t.Prefix.Addr()
	bits := t.Prefix.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return t, &InvalidBanError{Field: "address", Problem: "is an IPv4-mapped prefix shorter than /96"}
		}
		a, bits = a.Unmap(), bits-96
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return t, &InvalidBanError{Field: "address", Problem: err.Error()}
	}
	return Target{Prefix: p}, nil
}
