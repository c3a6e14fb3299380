package transport

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v2/pkg/protocol"
	"github.com/pion/dtls/v2/pkg/protocol/extension"
	"github.com/pion/dtls/v2/pkg/protocol/handshake"
	"github.com/pion/dtls/v2/pkg/protocol/recordlayer"
	"github.com/pion/transport/v3/deadline"
)

// udpMux is the UDP socket under the DTLS server: it hands each DTLS
// session its own net.PacketConn for pion's dtls.Server. Like the listener
// dtls.Listen builds, it routes a record that carries a Connection ID by
// that ID (RFC 9146: the client's address may change under it) and any
// other datagram by its source address, and opens a session for a
// handshake from a new address.
//
// It differs in one respect that matters for NB-IoT: pion's listener hands
// a ClientHello from an address whose session is established to that
// session, which ignores it, so a device that rebooted without a
// close_notify and comes back from the same address (no NAT, or the same
// binding) could not handshake again until its old session ended. Here
// such a ClientHello opens a pending session beside the established one.
// Handshake records from the address go to the pending session, all other
// records still to the established one, so a spoofed ClientHello cannot
// cut a device off; once the new handshake completes (it proved the key),
// the address moves to the new session, and the old one keeps only its
// Connection ID until the new registration replaces and closes it.
//
// And it bounds what ClientHellos from spoofed addresses cost: pion makes
// its HelloVerifyRequest cookie inside a handshake of its own, so every
// first ClientHello it sees costs a handshake (goroutines, buffers, a key
// pair). The mux lets pion see few of them: handshakes whose client has
// not echoed the cookie are bounded in number, age and churn, addresses
// that completed a handshake before skip that bound (see newConnLocked).
type udpMux struct {
	pc     *net.UDPConn
	sock   *udpSocket // pc's datagrams with their answer paths
	cidLen int

	mu      sync.Mutex
	byAddr  map[netip.AddrPort]*muxConn // the address's current session
	pending map[netip.AddrPort]*muxConn // a new handshake beside an established session
	byCID   map[string]*muxConn
	open    int // sessions not yet closed
	closing bool
	// unverified holds the sessions whose client has not echoed the
	// cookie of pion's HelloVerifyRequest yet, oldest first: at most
	// maxUnverified, each for at most cookieWait (see newConnLocked).
	unverified    list.List
	maxUnverified int
	cookieWait    time.Duration
	// known are the addresses of clients that completed a handshake:
	// theirs skip the unverified bound.
	known *knownAddrs

	accept chan *muxConn
	done   chan struct{}
	// admit, when set, may refuse an address a new handshake (a ban)
	// before anything is made for it.
	admit func(netip.Addr) bool
	// fwd, on a node of a cluster, forwards the records whose Connection
	// ID another node issued, and brings the datagrams other nodes
	// forward here (nil on a single node).
	fwd *Forwarder
}

// evictAfter: at the bound, a new handshake ends the oldest unverified
// one only if that has had a quarter of cookieWait (750 ms by default,
// many round trips), so that a flood churns through pion's handshakes at
// most maxUnverified*evictAfter/cookieWait a second (170): each leaves
// pion's garbage, which grows the heap until the next GC.
const evictAfter = 4

// maxKnownAddrs bounds the addresses remembered for having completed a
// handshake (knownAddrs): about 100 bytes each.
const maxKnownAddrs = 1 << 16

// muxQueue bounds the datagrams waiting for one session. A client's
// flight is a few records, and the session's reader takes each datagram
// as it comes; the queue, a fixed 56 bytes a slot, is held by every
// session for its life (64 slots were 4 KiB of a session's 43).
const muxQueue = 16

// newUDPMux reads pc's datagrams into sessions. backlog bounds the new
// sessions waiting for their handshake to start; a ClientHello that would
// open more is dropped (its client retransmits it after a second).
//
// maxUnverified and cookieWait bound the handshakes whose client has not
// proved its address yet (by echoing the cookie of pion's
// HelloVerifyRequest): see newConnLocked.
//
// fwd, when set, makes the mux a node of a cluster (see Forwarder).
func newUDPMux(pc *net.UDPConn, cidLen, backlog, maxUnverified int, cookieWait time.Duration, admit func(netip.Addr) bool, fwd *Forwarder) (*udpMux, error) {
	sock, err := newUDPSocket(pc)
	if err != nil {
		return nil, err
	}
	m := newMux(pc, cidLen, backlog, maxUnverified, cookieWait)
	m.sock, m.admit, m.fwd = sock, admit, fwd
	if fwd != nil && cidLen >= NodeTagSize {
		fwd.attach(m)
	} else {
		m.fwd = nil
	}
	go m.readLoop()
	return m, nil
}

func newMux(pc *net.UDPConn, cidLen, backlog, maxUnverified int, cookieWait time.Duration) *udpMux {
	return &udpMux{pc: pc, cidLen: cidLen, byAddr: make(map[netip.AddrPort]*muxConn),
		pending: make(map[netip.AddrPort]*muxConn), byCID: make(map[string]*muxConn),
		accept: make(chan *muxConn, backlog), done: make(chan struct{}),
		maxUnverified: max(maxUnverified, 1), cookieWait: cookieWait, known: newKnownAddrs(maxKnownAddrs)}
}

func (m *udpMux) readLoop() {
	buf := make([]byte, 8192)
	for {
		n, from, path, err := m.sock.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c, owner, forward, ended := m.dispatch(buf[:n], from, time.Now(), m.fwd != nil)
		for _, e := range ended {
			_ = e.Close()
		}
		if c != nil {
			c.deliver(buf[:n], from, path)
		} else if forward {
			m.fwd.toOwner(buf[:n], from, owner)
		}
	}
}

// forwarded takes a datagram another node of the cluster received from
// the device at from and forwarded here; what its session sends goes
// back along path, through that node.
func (m *udpMux) forwarded(b []byte, from netip.AddrPort, path *answerPath) {
	c, _, _, ended := m.dispatch(b, from, time.Now(), false)
	for _, e := range ended {
		_ = e.Close()
	}
	if c != nil {
		c.deliver(b, from, path)
	}
}

// route picks the session a datagram received at now belongs to, opening
// one if it starts a handshake; nil drops it. ended are sessions the
// datagram ends, for the caller to close: a pending handshake that a
// fresh ClientHello from the same address replaces, unverified ones
// beyond the bounds.
func (m *udpMux) route(b []byte, from netip.AddrPort, now time.Time) (c *muxConn, ended []*muxConn) {
	c, _, _, ended = m.dispatch(b, from, now, false)
	return c, ended
}

// dispatch is route on a node of a cluster: when mayForward, a datagram
// with a record whose Connection ID another node issued, and that no
// session here has, is that node's (forward, owner its tag, c nil).
//
// Such a record may come first (tls12_cid, RFC 9146 §4), or after the
// epoch-0 records of a client's last handshake flight, whose Finished is
// already protected and carries the CID: that flight is forwarded when
// no established session here has the address.
func (m *udpMux) dispatch(b []byte, from netip.AddrPort, now time.Time, mayForward bool) (c *muxConn, owner NodeTag, forward bool, ended []*muxConn) {
	first, hello, cookie := classify(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	ended = m.expireLocked(now, ended)
	if m.cidLen > 0 && first == protocol.ContentTypeConnectionID {
		if cid, ok := recordCID(b, m.cidLen); ok {
			if c := m.byCID[cid]; c != nil {
				return c, 0, false, ended
			}
			if tag, ok := m.foreign(cid, mayForward); ok {
				return nil, tag, true, ended
			}
		}
	}
	c = m.byAddr[from]
	if mayForward && !hello && (c == nil || !c.established) && first == protocol.ContentTypeHandshake {
		if cid, ok := recordCID(b, m.cidLen); ok && m.byCID[cid] == nil {
			if tag, ok := m.foreign(cid, true); ok {
				return nil, tag, true, ended
			}
		}
	}
	c, ended = m.routeAddrLocked(c, from, now, first, hello, cookie, ended)
	return c, 0, false, ended
}

// foreign reports the tag of cid when another node issued it and the
// datagram may be forwarded.
func (m *udpMux) foreign(cid string, mayForward bool) (NodeTag, bool) {
	if !mayForward || m.fwd == nil {
		return 0, false
	}
	tag, ok := cidTag(cid)
	if !ok || m.fwd.owns(tag) {
		return 0, false
	}
	return tag, true
}

// routeAddrLocked routes by source address a datagram that no Connection
// ID routed: to c, the address's session, or a new or pending handshake.
func (m *udpMux) routeAddrLocked(c *muxConn, from netip.AddrPort, now time.Time,
	first protocol.ContentType, hello bool, cookie []byte, ended []*muxConn) (*muxConn, []*muxConn) {
	switch {
	case c == nil:
		// Only a first ClientHello starts a handshake: pion could do
		// nothing with a later one, nor with any other record.
		if !hello || cookie != nil || m.closing || !m.admitted(from) {
			return nil, ended
		}
		c, ended = m.newConnLocked(from, now, ended)
		if c != nil {
			m.byAddr[from] = c
		}
		return c, ended
	case c.established && hello:
		p := m.pending[from]
		if p != nil && cookie != nil {
			m.verifyLocked(p, cookie)
			return p, ended // the second ClientHello of that handshake
		}
		if cookie != nil {
			return nil, ended // no handshake of its own to go to
		}
		// A first ClientHello: a new handshake, which replaces one that
		// a client gave up on.
		if p != nil {
			delete(m.pending, from)
			m.unlistLocked(p)
			ended = append(ended, p)
		}
		if m.closing || !m.admitted(from) {
			return nil, ended
		}
		if p, ended = m.newConnLocked(from, now, ended); p != nil {
			m.pending[from] = p
		}
		return p, ended
	case first == protocol.ContentTypeHandshake || first == protocol.ContentTypeChangeCipherSpec:
		if p := m.pending[from]; p != nil {
			c = p
		}
	}
	if hello && cookie != nil {
		m.verifyLocked(c, cookie)
	}
	return c, ended
}

// admitted reports whether a handshake from addr may start.
func (m *udpMux) admitted(from netip.AddrPort) bool {
	return m.admit == nil || m.admit(from.Addr().Unmap())
}

// verifyLocked marks c verified if cookie is the one pion sent it: its
// client has proved it receives at its address.
func (m *udpMux) verifyLocked(c *muxConn, cookie []byte) {
	if c != nil && c.cookie != nil && bytes.Equal(c.cookie, cookie) {
		m.unlistLocked(c)
		c.proven.Store(true)
	}
}

// unlistLocked takes c out of the unverified list.
func (m *udpMux) unlistLocked(c *muxConn) {
	if c.elem != nil {
		m.unverified.Remove(c.elem)
		c.elem = nil
	}
}

// expireLocked ends the unverified sessions older than cookieWait.
func (m *udpMux) expireLocked(now time.Time, ended []*muxConn) []*muxConn {
	for e := m.unverified.Front(); e != nil; e = m.unverified.Front() {
		c := e.Value.(*muxConn)
		if now.Sub(c.born) < m.cookieWait {
			break
		}
		ended = append(ended, m.evictLocked(c))
	}
	return ended
}

// evictLocked takes an unverified session out of the routing, for the
// caller to close.
func (m *udpMux) evictLocked(c *muxConn) *muxConn {
	m.unlistLocked(c)
	if m.byAddr[c.key] == c {
		delete(m.byAddr, c.key)
	}
	if m.pending[c.key] == c {
		delete(m.pending, c.key)
	}
	return c
}

// newConnLocked opens a session for a first ClientHello, unverified
// until its client echoes the cookie of pion's HelloVerifyRequest. Pion
// does the work of a handshake (a key pair, a goroutine, buffers) before
// it sends that cookie, so unverified sessions are bounded: at most
// maxUnverified, each for cookieWait at most. At the bound, a new one
// ends the oldest if pion has answered it and its client has had a
// quarter of cookieWait to echo the cookie, and is dropped otherwise (the
// client retransmits its ClientHello a second later). A flood of ClientHellos
// from spoofed addresses, which never echo a cookie, then costs pion at
// most maxUnverified handshakes at a time, while a real client echoes
// its cookie within a round trip and leaves the bound.
//
// A client from the address of one that completed a handshake (known)
// skips the bound: it does not queue behind the flood.
func (m *udpMux) newConnLocked(from netip.AddrPort, now time.Time, ended []*muxConn) (*muxConn, []*muxConn) {
	known := m.known.has(from.Addr())
	if !known && m.unverified.Len() >= m.maxUnverified {
		oldest := m.unverified.Front().Value.(*muxConn)
		if oldest.cookie == nil || now.Sub(oldest.born) < m.cookieWait/evictAfter {
			return nil, ended
		}
		ended = append(ended, m.evictLocked(oldest))
	}
	c := &muxConn{m: m, raddr: net.UDPAddrFromAddrPort(from), key: from, in: make(chan datagram, muxQueue),
		done: make(chan struct{}), readDeadline: deadline.New(), born: now}
	select {
	case m.accept <- c:
		m.open++
		if !known {
			c.elem = m.unverified.PushBack(c)
		}
		return c, ended
	default:
		return nil, ended // backlog full
	}
}

// established records that c completed its handshake: it becomes its
// address's session.
func (m *udpMux) established(c *muxConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c.established = true
	c.proven.Store(true)
	m.unlistLocked(c)
	m.known.add(c.key.Addr())
	if m.pending[c.key] == c {
		delete(m.pending, c.key)
		m.byAddr[c.key] = c
	}
}

// Accept returns the next session to handshake.
func (m *udpMux) Accept() (*muxConn, error) {
	select {
	case c := <-m.accept:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close stops opening sessions; the socket closes with the last one.
func (m *udpMux) Close() error {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return nil
	}
	m.closing = true
	close(m.done)
	m.mu.Unlock()
	for {
		select {
		case c := <-m.accept:
			_ = c.Close()
		default:
			m.mu.Lock()
			last := m.open == 0
			m.mu.Unlock()
			if last {
				return m.pc.Close()
			}
			return nil
		}
	}
}

func (m *udpMux) remove(c *muxConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unlistLocked(c)
	if m.byAddr[c.key] == c {
		delete(m.byAddr, c.key)
		if p := m.pending[c.key]; p != nil {
			// The pending handshake inherits the address.
			delete(m.pending, c.key)
			m.byAddr[c.key] = p
		}
	}
	if m.pending[c.key] == c {
		delete(m.pending, c.key)
	}
	if c.cid != "" && m.byCID[c.cid] == c {
		delete(m.byCID, c.cid)
	}
	m.open--
	if m.closing && m.open == 0 {
		_ = m.pc.Close()
	}
}

// classify reads a datagram: the content type of its first record,
// whether it carries an epoch-0 ClientHello, and that hello's cookie (nil
// in a first ClientHello; the second of a handshake echoes the cookie of
// the server's HelloVerifyRequest).
func classify(b []byte) (ct protocol.ContentType, hello bool, cookie []byte) {
	if len(b) < recordlayer.FixedHeaderSize {
		return 0, false, nil
	}
	hello, cookie = firstHello(b)
	if len(cookie) == 0 {
		cookie = nil
	}
	return protocol.ContentType(b[0]), hello, cookie
}

// recordCID extracts the Connection ID of the first tls12_cid record.
func recordCID(b []byte, size int) (string, bool) {
	pkts, err := recordlayer.ContentAwareUnpackDatagram(b, size)
	if err != nil {
		return "", false
	}
	for _, p := range pkts {
		h := &recordlayer.Header{ConnectionID: make([]byte, size)}
		if err := h.Unmarshal(p); err != nil || h.ContentType != protocol.ContentTypeConnectionID {
			continue
		}
		return string(h.ConnectionID), true
	}
	return "", false
}

// serverHelloCID extracts the Connection ID the server offers in a
// ServerHello, which is how the mux learns a session's ID.
func serverHelloCID(b []byte) (string, bool) {
	pkts, err := recordlayer.UnpackDatagram(b)
	if err != nil || len(pkts) == 0 {
		return "", false
	}
	var h recordlayer.Header
	if h.Unmarshal(pkts[0]) != nil || h.ContentType != protocol.ContentTypeHandshake {
		return "", false
	}
	for _, p := range pkts {
		if len(p) < recordlayer.FixedHeaderSize+handshake.HeaderLength {
			continue
		}
		var hh handshake.Header
		if hh.Unmarshal(p[recordlayer.FixedHeaderSize:]) != nil || hh.Type != handshake.TypeServerHello {
			continue
		}
		var sh handshake.MessageServerHello
		if sh.Unmarshal(p[recordlayer.FixedHeaderSize+handshake.HeaderLength:]) != nil {
			continue
		}
		for _, ext := range sh.Extensions {
			if e, ok := ext.(*extension.ConnectionID); ok && len(e.CID) > 0 {
				return string(e.CID), true
			}
		}
	}
	return "", false
}

type datagram struct {
	b    []byte
	from netip.AddrPort
}

// muxConn is one DTLS session's view of the socket.
type muxConn struct {
	m     *udpMux
	raddr *net.UDPAddr
	key   netip.AddrPort
	in    chan datagram
	done  chan struct{}
	once  sync.Once

	readDeadline *deadline.Deadline
	// path is how the session's last datagram came: what it sends goes
	// out the same way back (see udpSocket).
	path lastPath
	// established, cid, born, elem and cookie are guarded by m.mu.
	established bool
	cid         string
	// born is when the first ClientHello came; elem is the session's
	// place in the unverified list until its client echoes cookie, the
	// one pion sent it (nil until then).
	born   time.Time
	elem   *list.Element
	cookie []byte
	// proven: the client echoed its cookie or completed the handshake
	// (read without the lock by every write).
	proven atomic.Bool
	// identity is the PSK identity of the client's ClientKeyExchange,
	// for the log of a failed handshake.
	ident atomic.Pointer[string]
}

func (c *muxConn) deliver(b []byte, from netip.AddrPort, path *answerPath) {
	c.path.note(path)
	if c.ident.Load() == nil {
		if id, ok := clientIdentity(b); ok {
			c.ident.Store(&id)
		}
	}
	select {
	case c.in <- datagram{b: append([]byte(nil), b...), from: from}:
	default: // a full queue drops, as a full socket buffer would
	}
}

// ReadFrom returns the session's next datagram. The address is the
// session's own unless the datagram came from elsewhere (a Connection ID
// record after the device's address changed), so a read allocates none.
func (c *muxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-c.in:
		if d.from == c.key {
			return copy(b, d.b), c.raddr, nil
		}
		return copy(b, d.b), net.UDPAddrFromAddrPort(d.from), nil
	case <-c.readDeadline.Done():
		return 0, nil, errDeadline
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo sends on the shared socket; a ServerHello that offers a
// Connection ID registers it for routing.
func (c *muxConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	c.learnCookie(b)
	if c.m.cidLen > 0 {
		c.m.mu.Lock()
		known := c.cid != ""
		c.m.mu.Unlock()
		if !known {
			if cid, ok := serverHelloCID(b); ok {
				c.m.mu.Lock()
				c.cid = cid
				c.m.byCID[cid] = c
				c.m.mu.Unlock()
			}
		}
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.m.pc.WriteTo(b, addr)
	}
	path := c.path.get()
	if path != nil && path.via.IsValid() && c.m.fwd != nil {
		// The device's last datagram came in at another node: the answer
		// goes out there, from the address the device sent to.
		if err := c.m.fwd.toDevice(b, unmapped(ua.AddrPort()), path.via); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	if err := c.m.sock.write(context.Background(), b, unmapped(ua.AddrPort()), path); err != nil {
		return 0, err
	}
	return len(b), nil
}

// learnCookie notes the cookie of a HelloVerifyRequest pion sends an
// unverified client, which its next ClientHello must echo.
func (c *muxConn) learnCookie(b []byte) {
	if c.proven.Load() {
		return
	}
	cookie, ok := sentCookie(b)
	if !ok {
		return
	}
	c.m.mu.Lock()
	c.cookie = append(c.cookie[:0], cookie...)
	c.m.mu.Unlock()
}

// identity is the PSK identity the client presented ("" before its
// ClientKeyExchange).
func (c *muxConn) identity() string {
	if id := c.ident.Load(); id != nil {
		return *id
	}
	return ""
}

// provedAddress reports whether the client echoed pion's cookie: a
// handshake that fails before that came from an address nobody answers
// at, or from a spoofed one.
func (c *muxConn) provedAddress() bool { return c.proven.Load() }

// Close ends the session's view; the socket stays for the others.
func (c *muxConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.m.remove(c)
	})
	return nil
}

func (c *muxConn) LocalAddr() net.Addr { return c.m.pc.LocalAddr() }

func (c *muxConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *muxConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Set(t)
	return nil
}

// SetWriteDeadline is a no-op: writes to a UDP socket do not block.
func (c *muxConn) SetWriteDeadline(time.Time) error { return nil }

// errDeadline is the timeout error of ReadFrom.
var errDeadline error = deadlineError{}

type deadlineError struct{}

func (deadlineError) Error() string   { return "i/o timeout" }
func (deadlineError) Timeout() bool   { return true }
func (deadlineError) Temporary() bool { return true }
