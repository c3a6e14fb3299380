package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
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

	accept chan *muxConn
	done   chan struct{}
}

// muxQueue bounds the datagrams waiting for one session. A client's
// flight is a few records, and the session's reader takes each datagram
// as it comes; the queue, a fixed 56 bytes a slot, is held by every
// session for its life (64 slots were 4 KiB of a session's 43).
const muxQueue = 16

// newUDPMux reads pc's datagrams into sessions. backlog bounds the new
// sessions waiting for their handshake to start; a ClientHello that would
// open more is dropped (its client retransmits it after a second).
func newUDPMux(pc *net.UDPConn, cidLen, backlog int) (*udpMux, error) {
	sock, err := newUDPSocket(pc)
	if err != nil {
		return nil, err
	}
	m := &udpMux{pc: pc, sock: sock, cidLen: cidLen, byAddr: make(map[netip.AddrPort]*muxConn),
		pending: make(map[netip.AddrPort]*muxConn), byCID: make(map[string]*muxConn),
		accept: make(chan *muxConn, backlog), done: make(chan struct{})}
	go m.readLoop()
	return m, nil
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
		c, abandoned := m.route(buf[:n], from)
		if abandoned != nil {
			_ = abandoned.Close()
		}
		if c != nil {
			c.deliver(buf[:n], from, path)
		}
	}
}

// route picks the session a datagram belongs to, opening one if it starts
// a handshake; nil drops it. abandoned is a pending handshake that a fresh
// ClientHello from the same address replaces, for the caller to close.
func (m *udpMux) route(b []byte, from netip.AddrPort) (c, abandoned *muxConn) {
	first, hello, cookie := classify(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cidLen > 0 && first == protocol.ContentTypeConnectionID {
		if cid, ok := recordCID(b, m.cidLen); ok {
			if c := m.byCID[cid]; c != nil {
				return c, nil
			}
		}
	}
	c = m.byAddr[from]
	switch {
	case c == nil:
		if first != protocol.ContentTypeHandshake || m.closing {
			return nil, nil
		}
		c = m.newConnLocked(from)
		if c != nil {
			m.byAddr[from] = c
		}
		return c, nil
	case c.established && hello:
		p := m.pending[from]
		if p != nil && cookie {
			return p, nil // the second ClientHello of that handshake
		}
		// A first ClientHello: a new handshake, which replaces one that
		// a client gave up on.
		if p != nil {
			delete(m.pending, from)
			abandoned = p
		}
		if m.closing {
			return nil, abandoned
		}
		if p = m.newConnLocked(from); p != nil {
			m.pending[from] = p
		}
		return p, abandoned
	case first == protocol.ContentTypeHandshake || first == protocol.ContentTypeChangeCipherSpec:
		if p := m.pending[from]; p != nil {
			return p, nil
		}
	}
	return c, nil
}

func (m *udpMux) newConnLocked(from netip.AddrPort) *muxConn {
	c := &muxConn{m: m, raddr: net.UDPAddrFromAddrPort(from), key: from, in: make(chan datagram, muxQueue),
		done: make(chan struct{}), readDeadline: deadline.New()}
	select {
	case m.accept <- c:
		m.open++
		return c
	default:
		return nil // backlog full
	}
}

// established records that c completed its handshake: it becomes its
// address's session.
func (m *udpMux) established(c *muxConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c.established = true
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

// classify reads the first record of a datagram: its content type,
// whether it is an epoch-0 ClientHello, and whether that carries a cookie
// (the second ClientHello of a handshake, after HelloVerifyRequest).
func classify(b []byte) (ct protocol.ContentType, hello, cookie bool) {
	const rec, hs = recordlayer.FixedHeaderSize, handshake.HeaderLength
	if len(b) < rec {
		return 0, false, false
	}
	ct = protocol.ContentType(b[0])
	epoch := uint16(b[3])<<8 | uint16(b[4])
	if ct != protocol.ContentTypeHandshake || epoch != 0 || len(b) <= rec || handshake.Type(b[rec]) != handshake.TypeClientHello {
		return ct, false, false
	}
	// ClientHello: version (2), random (32), session id, cookie.
	sid := rec + hs + 2 + 32
	if len(b) <= sid {
		return ct, true, false
	}
	ck := sid + 1 + int(b[sid])
	return ct, true, len(b) > ck && b[ck] > 0
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
	// established and cid are guarded by m.mu.
	established bool
	cid         string
}

func (c *muxConn) deliver(b []byte, from netip.AddrPort, path *answerPath) {
	c.path.note(path)
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
	if err := c.m.sock.write(context.Background(), b, unmapped(ua.AddrPort()), c.path.get()); err != nil {
		return 0, err
	}
	return len(b), nil
}

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
