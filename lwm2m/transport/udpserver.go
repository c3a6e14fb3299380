package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"
)

// UDPServer serves CoAP (NoSec) on one UDP socket: a read loop of ours
// hands each datagram to go-coap's connection of its sender's address,
// made on the first datagram (or request of ours) and closed when idle.
//
// It stands in for go-coap's udp/server.Server, which at every datagram
// also checked the whole response cache of the sender's connection: the
// answer to every confirmable request, kept 247 s (EXCHANGE_LIFETIME) to
// answer retransmissions. A datagram's cost grew with how many requests
// its address had sent in that time, on the one goroutine that reads the
// socket for every client: after 20,000 requests from one address each
// of its datagrams took 1.2 ms instead of 55 µs (BenchmarkChattyAddress),
// so one chatty or hostile client could stall the listener. Here only
// the periodic sweep expires the caches, as it does for DTLS sessions
// (sessionSweep).
type UDPServer struct {
	cfg    udpServer.Config
	l      *coapNet.UDPConn
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	conns    map[netip.AddrPort]udpPeer // by peer address
	sock     *udpSocket
	sessions *sessionSweep[*udpClient.Conn]
}

// NewUDPServer serves l with go-coap's connections configured by cfg
// (its Handler, OnNewConn and CreateInactivityMonitor included), checked
// as sw says.
func NewUDPServer(cfg udpServer.Config, l *coapNet.UDPConn, sw Sweep) (*UDPServer, error) {
	conn, ok := l.NetConn().(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("coap socket is a %T, not a UDP socket", l.NetConn())
	}
	sock, err := newUDPSocket(conn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(cfg.Ctx)
	sessions := newConnSweep(sw)
	return &UDPServer{cfg: cfg, l: l, sock: sock, ctx: ctx, cancel: cancel, conns: make(map[netip.AddrPort]udpPeer), sessions: sessions}, nil
}

// Serve reads datagrams until Stop, then closes the connections.
func (s *UDPServer) Serve() error {
	defer closeConns(s.sessions)
	sweepConns(s.ctx, &s.cfg, s.sessions)
	buf := make([]byte, s.cfg.MaxMessageSize)
	for {
		n, from, path, err := s.sock.read(buf)
		if err != nil {
			if s.ctx.Err() != nil || coapNet.IsCancelOrCloseError(err) {
				return nil
			}
			return fmt.Errorf("coap read: %w", err)
		}
		p := s.conn(from)
		p.sess.path.note(path)
		var cm *coapNet.ControlMessage
		if path != nil {
			cm = path.cm
		}
		cc := p.cc
		// Process decodes the datagram into a message of its own: buf is
		// free for the next read when it returns.
		if err := cc.Process(cm, buf[:n]); err != nil {
			_ = cc.Close()
			s.cfg.Errors(fmt.Errorf("%v: cannot process datagram: %w", from, err))
		}
	}
}

// Stop ends Serve (closing the socket) without waiting for it.
func (s *UDPServer) Stop() {
	s.cancel()
	_ = s.l.Close()
}

// NewConn returns the connection to addr, made if there is none, to send
// a request on.
func (s *UDPServer) NewConn(addr *net.UDPAddr) (*udpClient.Conn, error) {
	if s.ctx.Err() != nil {
		return nil, errors.New("coap server stopped")
	}
	return s.conn(unmapped(addr.AddrPort())).cc, nil
}

// RequestStarted has cc checked every tick while busy, so that a request
// of ours is retransmitted on time.
func (s *UDPServer) RequestStarted(cc *udpClient.Conn) { s.sessions.markHot(cc) }

// udpPeer is the connection of one peer address and its session.
type udpPeer struct {
	cc   *udpClient.Conn
	sess *udpSession
}

// conn returns the open connection of the peer at addr (unmapped), or
// a new one.
func (s *UDPServer) conn(addr netip.AddrPort) udpPeer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.conns[addr]; p.cc != nil && p.cc.Context().Err() == nil {
		return p
	}
	sess := newUDPSession(s.ctx, s.l, s.sock, addr, s.cfg.MaxMessageSize)
	cc := newGoCoAPConn(&s.cfg, sess)
	p := udpPeer{cc: cc, sess: sess}
	s.conns[addr] = p
	// Under the lock, so nobody gets the connection before it has its
	// state.
	s.cfg.OnNewConn(cc)
	s.sessions.add(cc)
	cc.AddOnClose(func() {
		s.mu.Lock()
		if s.conns[addr].cc == cc {
			delete(s.conns, addr)
		}
		s.mu.Unlock()
		s.sessions.remove(cc)
	})
	return p
}

// udpSession is one peer address on the shared socket, as go-coap's
// connection sees it. Closing it ends the connection at once: its close
// handlers run and Done closes (go-coap's own UDP session leaves that to
// its server's loop).
type udpSession struct {
	ctx    atomic.Pointer[context.Context]
	cancel context.CancelFunc
	done   chan struct{}
	l      *coapNet.UDPConn
	sock   *udpSocket
	to     netip.AddrPort
	raddr  *net.UDPAddr // to, as go-coap asks for it
	max    uint32
	// path is how the peer's last datagram came (none before the
	// first): what we send it goes out the same way back.
	path lastPath

	mu      sync.Mutex
	onClose []udpClient.EventFunc
	closed  bool
}

var _ udpClient.Session = (*udpSession)(nil)

func newUDPSession(ctx context.Context, l *coapNet.UDPConn, sock *udpSocket, to netip.AddrPort, maxMessageSize uint32) *udpSession {
	ctx, cancel := context.WithCancel(ctx)
	s := &udpSession{cancel: cancel, done: make(chan struct{}), l: l, sock: sock, to: to, raddr: net.UDPAddrFromAddrPort(to), max: maxMessageSize}
	s.ctx.Store(&ctx)
	return s
}

func (s *udpSession) Context() context.Context { return *s.ctx.Load() }

func (s *udpSession) SetContextValue(key, val any) {
	ctx := context.WithValue(s.Context(), key, val)
	s.ctx.Store(&ctx)
}

func (s *udpSession) Close() error {
	s.cancel()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	fns := s.onClose
	s.onClose = nil
	s.mu.Unlock()
	for _, f := range fns {
		f()
	}
	close(s.done)
	return nil
}

func (s *udpSession) AddOnClose(f udpClient.EventFunc) {
	s.mu.Lock()
	if !s.closed {
		s.onClose = append(s.onClose, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f() // closed already: as if it had been added before
}

func (s *udpSession) Done() <-chan struct{}  { return s.done }
func (s *udpSession) MaxMessageSize() uint32 { return s.max }
func (s *udpSession) RemoteAddr() net.Addr   { return s.raddr }
func (s *udpSession) LocalAddr() net.Addr    { return s.l.LocalAddr() }
func (s *udpSession) NetConn() net.Conn      { return s.l.NetConn() }

func (s *udpSession) WriteMessage(req *pool.Message) error {
	data, err := req.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return fmt.Errorf("cannot marshal: %w", err)
	}
	err = s.sock.write(req.Context(), data, s.to, s.path.get())
	if errors.Is(err, net.ErrClosed) {
		return coapNet.ErrConnectionIsClosed // as go-coap's own session says it
	}
	return err
}

func (s *udpSession) WriteMulticastMessage(req *pool.Message, address *net.UDPAddr, opts ...coapNet.MulticastOption) error {
	data, err := req.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return fmt.Errorf("cannot marshal: %w", err)
	}
	return s.l.WriteMulticast(req.Context(), address, data, opts...)
}

// Run is for a connection that reads its own socket; the server reads
// this one's.
func (s *udpSession) Run(*udpClient.Conn) error {
	return errors.New("transport: a server session is fed by the server's read loop")
}

// ReadBuffer is the receive buffer of the NoSec and DTLS sockets, each
// read by one goroutine. When a fleet comes back after an outage, a burst
// of Registers or handshakes (and the answers to our observations)
// overflows the kernel's default (208 KiB), and every dropped datagram
// costs its client a retransmission timeout (1-2 s). Linux caps it at
// net.core.rmem_max.
const ReadBuffer = 4 << 20

// ListenUDP binds a NoSec CoAP socket with a ReadBuffer receive buffer.
func ListenUDP(addr string) (*coapNet.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	if err := c.SetReadBuffer(ReadBuffer); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("receive buffer: %w", err)
	}
	return coapNet.NewUDPConn("udp", c), nil
}
