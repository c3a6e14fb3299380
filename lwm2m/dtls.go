package lwm2m

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/dtls/v2"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
)

// cidLength is the length of the DTLS Connection IDs this server hands out.
// The mux routes records by CID only when all CIDs have one length; 8 random
// bytes make collisions between live sessions negligible.
const cidLength = 8

// pskCipherSuites are the PSK suites offered: the two Huawei names plus the
// GCM and CCM variants pion implements.
var pskCipherSuites = []dtls.CipherSuiteID{
	dtls.TLS_PSK_WITH_AES_128_CCM_8,
	dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	dtls.TLS_PSK_WITH_AES_128_CCM,
	dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
}

// dtlsConfig is the server side of DTLS 1.2 with PSKs from the security
// store, Connection IDs and HelloVerifyRequest cookies (pion's default,
// kept on: InsecureSkipVerifyHello stays false).
func dtlsConfig(sec SecurityStore, handshakeTimeout time.Duration, log *slog.Logger) *dtls.Config {
	return &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			defer cancel()
			key, err := pskLookup(ctx, sec, identity)
			if err != nil {
				log.Warn("dtls: psk lookup failed", "identity", string(identity), "err", err)
			}
			return key, err
		},
		// A server must name a hint for pion to run PSK key exchange with
		// clients that send none; LwM2M clients ignore it.
		PSKIdentityHint:       []byte("iotgate"),
		CipherSuites:          pskCipherSuites,
		ExtendedMasterSecret:  dtls.RequestExtendedMasterSecret,
		ConnectionIDGenerator: dtls.RandomCIDGenerator(cidLength),
		ConnectContextMaker: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), handshakeTimeout)
		},
		// One logger for every session, into the platform's log
		// (pionlog.go).
		LoggerFactory: newPionLogger(log),
	}
}

// dtlsListener is the listener coapsServer accepts: sessions
// from our udpMux (Connection ID routing, re-handshakes from a known
// address), each handshaken by pion's dtls.Server. go-coap's own DTLS
// listener routes datagrams by source address only.
//
// At most max handshakes run at once (a goroutine each), each bounded by
// the config's handshake timeout, and as many new sessions wait in the
// mux for theirs to start; ClientHellos that would open more are dropped,
// and clients retry.
type dtlsListener struct {
	mux    *udpMux
	cfg    *dtls.Config
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	slots  chan struct{} // one per handshake in progress
	log    *slog.Logger
	closed chan struct{} // closed when the accept loop and every handshake have stopped
}

func listenDTLS(addr string, cfg *dtls.Config, maxHandshakes int, log *slog.Logger) (*dtlsListener, error) {
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
	if err := pc.SetReadBuffer(udpReadBuffer); err != nil {
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
	mux, err := newUDPMux(pc, cidLen, maxHandshakes)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("dtls listen %s: %w", addr, err)
	}
	l := &dtlsListener{mux: mux, cfg: cfg, conns: make(chan net.Conn), done: make(chan struct{}),
		slots: make(chan struct{}, maxHandshakes), log: log, closed: make(chan struct{})}
	l.wg.Add(1)
	go l.acceptLoop()
	go func() { l.wg.Wait(); close(l.closed) }()
	return l, nil
}

// Addr is the bound UDP address.
func (l *dtlsListener) Addr() net.Addr { return l.mux.pc.LocalAddr() }

// acceptLoop starts a handshake for each new session from the mux, once
// a slot is free (until then new sessions wait in the mux's backlog).
func (l *dtlsListener) acceptLoop() {
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
func (l *dtlsListener) handshake(mc *muxConn) {
	c, err := dtls.Server(mc, mc.raddr, l.cfg)
	if err != nil {
		// Wrong key, unknown identity, timeout, garbage: the client's
		// problem, not the listener's.
		_ = mc.Close()
		l.log.Debug("dtls handshake failed", "addr", mc.raddr.String(), "err", err)
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
func (l *dtlsListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
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
func (l *dtlsListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.mux.Close()
	})
	return err
}
