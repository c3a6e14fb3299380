package lwm2m

import (
	"crypto/rand"
	"encoding/base32"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Registration is what a client told the server in its last Register or
// Update. A value is an immutable snapshot; an Update publishes a new one.
type Registration struct {
	ID       string // the {id} of Location-Path rd/{id}
	Endpoint string // ep
	DeviceID string // the registry device the endpoint resolved to
	Version  string // lwm2m ("" for 1.0 clients that omit it)
	Binding  string
	// QueueMode: the client is reachable only for a short window after it
	// sends something (binding "UQ" or the 1.1 "Q" parameter).
	QueueMode bool
	SMS       string
	Lifetime  time.Duration
	RootPath  string
	Objects   []ObjectLink
	// Formats are the content formats the client declared with ct on its
	// root link (LwM2M 1.1); see negotiate.go for how they are used.
	Formats format.Set
	// Secure: registered over DTLS.
	Secure       bool
	Addr         string // remote address of the last Register or Update
	RegisteredAt time.Time
	UpdatedAt    time.Time
}

// entry is the server's live state of one registration: the published
// Registration, how to reach the client, its observations and its command
// delivery. Identity fields never change; the rest is safe for concurrent
// use as documented per field.
type entry struct {
	id, deviceID string
	secure       bool
	session      registry.Session
	// regMID is the message ID of the Register that made the entry.
	regMID int32

	reg atomic.Pointer[Registration]
	// conn is the DTLS session of a secure client; nil for NoSec ones,
	// which are reached at addr through the UDP server.
	conn atomic.Pointer[udpClient.Conn]
	addr atomic.Pointer[net.UDPAddr]
	// lastUplink is when the client last sent anything (unix ns).
	lastUplink atomic.Int64
	// removed is set once the registration left the store.
	removed atomic.Bool
	// pending hints that the registry may hold PENDING commands for the
	// device; cleared before each look, so a hint is never lost.
	pending atomic.Bool
	// savedExpiry is the expiry of the entry's last stored record (unix
	// ns; see renewSaved).
	savedExpiry atomic.Int64

	// deadline and heapIdx belong to the store and are guarded by its lock.
	deadline time.Time
	heapIdx  int

	mu sync.Mutex // guards the fields below
	// observations by token.
	observations map[string]*observation
	// delivering: a goroutine is delivering commands; again: look for
	// more once it is done.
	delivering, again bool
}

func newEntry(r *Registration, secure bool, session registry.Session) *entry {
	e := &entry{id: r.ID, deviceID: r.DeviceID, secure: secure, session: session, heapIdx: -1,
		observations: make(map[string]*observation)}
	e.reg.Store(r)
	e.pending.Store(true) // commands may have been queued while it was away
	return e
}

// exchangeLifetime is how long a CoAP peer may retransmit a confirmable
// message (RFC 7252 §4.8.2, EXCHANGE_LIFETIME).
const exchangeLifetime = 247 * time.Second

// retransmits reports whether a Register with message ID mid from addr
// is a retransmission of the one that made e: same address, same message
// ID, within the exchange lifetime (what a CoAP response cache matches).
func (e *entry) retransmits(addr string, mid int32, now time.Time) bool {
	r := e.reg.Load()
	return !e.secure && e.regMID == mid && r.Addr == addr && now.Sub(r.RegisteredAt) < exchangeLifetime
}

// awake reports whether the client can take a request now: always for a
// client that is not in queue mode, else within window of its last uplink.
func (e *entry) awake(now time.Time, window time.Duration) bool {
	if !e.reg.Load().QueueMode {
		return true
	}
	return now.UnixNano()-e.lastUplink.Load() < int64(window)
}

// registrationIDs are 16 base32 characters (80 random bits): unguessable,
// so a NoSec client cannot update or delete another's registration by
// trying ids.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newRegistrationID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
