// Package guard holds the platform's abuse controls: counters of failed
// authentications and of connects in sliding windows, and the ban list
// they feed. Every protocol adapter consults it before any cryptography
// or store lookup, so that a banned client costs a map lookup and
// nothing more.
//
// Identities are strings the adapters choose: a device id (IoTDA MQTT),
// "DeviceName&ProductKey" (Alibaba MQTT, the username as sent), an
// LwM2M endpoint name or a client id. Addresses are counted and banned
// per IPv4 address and per IPv6 /64 (one subscriber's allocation), so
// an attacker cannot step through the addresses of its own prefix.
package guard

import (
	"context"
	"net/netip"
	"time"
)

// Guard is what the protocol adapters and the ban API consult. Local is
// the node-local implementation; Shared shares its ban list between the
// nodes of a cluster through a BanStore (each node still answers the
// checks from its own memory).
//
// The checks (AddressBanned, IdentityBanned) are O(1), do not allocate
// and take no lock while the list is empty.
type Guard interface {
	// AddressBanned reports whether addr (or its IPv6 /64, or a prefix
	// banned by hand) is banned now.
	AddressBanned(addr netip.Addr) bool
	// IdentityBanned reports whether identity is banned now.
	IdentityBanned(identity string) bool
	// AuthFailed records a failed authentication of identity ("" if
	// none could be read) from addr (invalid if unknown), and bans
	// either once its count in the window reaches the limit. It reports
	// whether this failure banned something.
	AuthFailed(identity string, addr netip.Addr) bool
	// Connected records an accepted connection of identity (flapping
	// detection) and reports false if the identity is now banned for
	// connecting too often.
	Connected(identity string) bool

	// Bans lists the bans in force, automatic and manual.
	Bans(ctx context.Context) ([]Ban, error)
	// Ban adds or replaces the ban of b.Target.
	Ban(ctx context.Context, b Ban) error
	// Unban lifts the ban of t; ErrNotBanned if there is none.
	Unban(ctx context.Context, t Target) error
}

// Window is a limit on events in a sliding window and the ban it
// triggers: reaching Max events within Window bans for Ban. A zero Max
// disables the limit.
type Window struct {
	Max    int
	Window time.Duration
	Ban    time.Duration
}

func (w Window) enabled() bool { return w.Max > 0 && w.Window > 0 && w.Ban > 0 }

// Config sets the limits of a Local guard. The zero value disables
// every automatic ban; Defaults gives the documented ones.
type Config struct {
	// IdentityFailures limits failed authentications per identity.
	IdentityFailures Window
	// AddressFailures limits failed authentications per source address
	// (IPv4 address, IPv6 /64). Higher than IdentityFailures by default:
	// many devices may share one NAT address.
	AddressFailures Window
	// Flapping limits accepted connections per identity.
	Flapping Window
	// MaxTracked bounds the keys each counter table tracks (identities,
	// addresses); past it, the least recently counted key is forgotten.
	MaxTracked int
	// MaxBans bounds the automatic bans held; past it, the automatic ban
	// that expires soonest is dropped first. Manual bans are bounded
	// apart, by MaxManualBans.
	MaxBans       int
	MaxManualBans int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults are EMQX's for failed authentications per identity and for
// flapping (15 in a minute → 5 minutes' ban; its flapping detection is
// off by default, ours allows a device one connect every 2 s on average
// over the minute), and a higher address limit for NATs.
func Defaults() Config {
	return Config{
		IdentityFailures: Window{Max: 15, Window: time.Minute, Ban: 5 * time.Minute},
		AddressFailures:  Window{Max: 100, Window: time.Minute, Ban: 5 * time.Minute},
		Flapping:         Window{Max: 30, Window: time.Minute, Ban: 5 * time.Minute},
		MaxTracked:       100_000,
		MaxBans:          100_000,
		MaxManualBans:    10_000,
	}
}
