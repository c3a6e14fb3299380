package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/iotgate/iotgate/lwm2m/ratelog"
	"github.com/pion/dtls/v2"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
)

// DTLSListener is the listener DTLSServer accepts: sessions
// from our udpMux (Connection ID routing, re-handshakes from a known
// address), each handshaken by pion's dtls.Server. go-coap's own DTLS
// listener routes datagrams by source address only.
//
// At most max handshakes run at once (a goroutine each), each bounded by
// the config's handshake timeout, and as many new sessions wait in the
// mux for theirs to start; ClientHellos that would open more are dropped,
// and clients retry.
type DTLSListener struct {
	mux   *udpMux
	cfg   *dtls.Config
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	slots chan struct{} // one per handshake in progress
	log   *slog.Logger
	// failures logs failed handshakes, under a budget; failed is told of
	// them (DTLSLimits.Failed).
	failures *ratelog.Logger
	failed   func(identity string, addr netip.Addr)
	ended    func(result string, took time.Duration) // DTLSLimits.Done
	closed   chan struct{}                           // closed when the accept loop and every handshake have stopped
	fwd      *Forwarder                              // nil on a single node
}

// The results of a handshake, as DTLSLimits.Done is told them.
const (
	HandshakeOK     = "ok"
	HandshakeFailed = "failed" // after the client echoed its cookie: a wrong key, an unknown identity, a timeout
	// HandshakeAbandoned: the client never echoed its cookie (a spoofed
	// address, or nobody there).
	HandshakeAbandoned = "abandoned"
)

// DTLSLimits bound the handshakes of a DTLSListener.
type DTLSLimits struct {
	// MaxHandshakes is how many handshakes run at once (a goroutine and
	// pion's state each); as many new sessions wait for theirs to start.
	MaxHandshakes int
	// MaxUnverified is how many handshakes may wait for their client to
	// echo the cookie of pion's HelloVerifyRequest; one more ends the
	// oldest (0: MaxHandshakes). CookieWait is how long one may wait
	// (0: 3 s).
	MaxUnverified int
	CookieWait    time.Duration
	// Admit, when set, is asked before a ClientHello from an address
	// starts a handshake; false drops it before any state is made for it
	// (a banned address).
	Admit func(netip.Addr) bool
	// Failed, when set, is told of each failed handshake of a client
	// that proved its address (its PSK identity, "" if it sent none).
	Failed func(identity string, addr netip.Addr)
	// Done, when set, is told of each handshake's end: its result
	// (HandshakeOK, HandshakeFailed, HandshakeAbandoned) and how long it
	// took. It runs on the handshake's goroutine and must not block.
	Done func(result string, took time.Duration)
	// Forward, on a node of a cluster, forwards the records whose
	// Connection ID another node issued to that node and takes the
	// datagrams other nodes forward here; the config's
	// ConnectionIDGenerator must then tag CIDs (TaggedCIDGenerator). The
	// listener closes it.
	Forward *Forwarder
}

// ListenDTLS binds addr and handshakes its clients with cfg within lim.
// failures logs the failed handshakes of clients that proved their
// address, under its budget.
func ListenDTLS(addr string, cfg *dtls.Config, lim DTLSLimits, failures *ratelog.Logger, log *slog.Logger) (_ *DTLSListener, err error) {
	if lim.Forward != nil {
		defer func() {
			if err != nil {
				_ = lim.Forward.Close()
			}
		}()
	}
	maxHandshakes := lim.MaxHandshakes
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dtls listen %s: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("dtls listen %s: %w", addr, err)
	}
	// One goroutine reads every session's records (see udpMux); a storm
	// of handshakes must queue in the kernel rather than be dropped (a
	// dropped flight costs its client a 1 s retransmission).
	if err := pc.SetReadBuffer(ReadBuffer); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("dtls listen %s: receive buffer: %w", addr, err)
	}
	cidLen := 0
	if cfg.ConnectionIDGenerator != nil {
		cidLen = len(cfg.ConnectionIDGenerator())
	}
	if maxHandshakes < 1 {
		maxHandshakes = 1
	}
	// A fleet coming back sends its first flights at once, faster than
	// one accept loop on a loaded machine starts handshakes: the mux holds
	// as many new sessions as may handshake at once. With 128, 1–4% of
	// a 5,000-device re-register storm lost its ClientHello and waited a
	// second for the retransmission.
	if lim.MaxUnverified <= 0 {
		lim.MaxUnverified = maxHandshakes
	}
	if lim.CookieWait <= 0 {
		lim.CookieWait = 3 * time.Second
	}
	mux, err := newUDPMux(pc, cidLen, maxHandshakes, lim.MaxUnverified, lim.CookieWait, lim.Admit, lim.Forward)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("dtls listen %s: %w", addr, err)
	}
	l := &DTLSListener{mux: mux, fwd: lim.Forward, cfg: cfg, conns: make(chan net.Conn), done: make(chan struct{}),
		slots: make(chan struct{}, maxHandshakes), failures: failures, log: log, closed: make(chan struct{}),
		failed: lim.Failed, ended: lim.Done}
	l.wg.Add(1)
	go l.acceptLoop()
	go func() { l.wg.Wait(); close(l.closed) }()
	return l, nil
}

// Addr is the bound UDP address.
func (l *DTLSListener) Addr() net.Addr { return l.mux.pc.LocalAddr() }

// acceptLoop starts a handshake for each new session from the mux, once
// a slot is free (until then new sessions wait in the mux's backlog).
func (l *DTLSListener) acceptLoop() {
	defer l.wg.Done()
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return
		}
		mc, err := l.mux.Accept()
		if err != nil {
			<-l.slots
			return // closed
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.slots }()
			l.handshake(mc)
		}()
	}
}

// handshake runs one server handshake and hands the session to go-coap.
func (l *DTLSListener) handshake(mc *muxConn) {
	start := time.Now()
	c, err := dtls.Server(mc, mc.raddr, l.cfg)
	if l.ended != nil {
		result := HandshakeOK
		switch {
		case err != nil && mc.provedAddress():
			result = HandshakeFailed
		case err != nil:
			result = HandshakeAbandoned
		}
		l.ended(result, time.Since(start))
	}
	if err != nil {
		// Wrong key, unknown identity, timeout, garbage: the client's
		// problem, not the listener's.
		_ = mc.Close()
		if mc.provedAddress() {
			l.failures.Info("dtls handshake failed", "addr", mc.raddr.String(), "identity", mc.identity(), "err", err)
			if l.failed != nil {
				l.failed(mc.identity(), mc.raddr.AddrPort().Addr().Unmap())
			}
		} else {
			// Never echoed the cookie: a spoofed address, or nobody
			// there; nothing for an operator.
			l.log.Debug("dtls handshake abandoned before the cookie", "addr", mc.raddr.String(), "err", err)
		}
		return
	}
	l.mux.established(mc)
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// AcceptWithContext returns the next connection whose handshake completed.
func (l *DTLSListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, coapNet.ErrListenerIsClosed
	case <-l.closed:
		return nil, coapNet.ErrListenerIsClosed
	}
}

// Close stops accepting; sessions already accepted stay open.
func (l *DTLSListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.mux.Close()
		if l.fwd != nil {
			_ = l.fwd.Close()
		}
	})
	return err
}
