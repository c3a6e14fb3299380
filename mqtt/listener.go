package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

// connectTimeout bounds the TLS handshake and the CONNECT packet of a new
// connection. After CONNECT, mochi's keepalive deadline takes over.
const connectTimeout = 30 * time.Second

// tcpListener is a mochi listener (plain TCP or TLS) with what mochi's own
// lacks for devices on open networks: a deadline for the handshake and
// the CONNECT packet (mochi sets none before CONNECT, so a connection
// that never sends one would hold its goroutine and socket for good),
// admission control before mochi sees a connection (admission.go),
// closing every connection at shutdown, established or not, and
// surviving temporary accept errors such as running out of descriptors.
type tcpListener struct {
	id, address string
	tls         *tls.Config // nil: plain TCP
	log         *slog.Logger
	admission   *admission
	rate        *rate.Limiter // new connections a second; nil: unlimited
	// descriptors, when set, wraps the bound listener beneath TLS and
	// admission (Options.Descriptors).
	descriptors ListenerWrapper

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

var _ listeners.Listener = (*tcpListener)(nil)

// ListenerWrapper wraps each listener the server binds, beneath TLS and
// admission, so that every connection accepted passes through it and
// every close, whoever makes it, reaches it. cmd/iotgate passes the
// MQTT pool of the process's descriptor budget (fdbudget.Pool), which
// closes connections accepted over it.
type ListenerWrapper interface {
	Listener(net.Listener) net.Listener
}

func newTCPListener(id, address string, tc *tls.Config, a *admission) *tcpListener {
	return &tcpListener{id: id, address: address, tls: tc, admission: a, rate: a.connectLimiter(),
		conns: make(map[net.Conn]struct{})}
}

func (l *tcpListener) ID() string { return l.id }

func (l *tcpListener) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}

// Address is the bound address once Init has run.
func (l *tcpListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Init binds the address.
func (l *tcpListener) Init(log *slog.Logger) error {
	// No TCP keepalive: a connection before CONNECT has connectTimeout,
	// and every session that stays has an MQTT keepalive (30–1200 s,
	// checked at CONNECT, enforced by mochi's read deadline), so the
	// kernel's probes would find no dead peer the protocol does not, and
	// setting them up costs four system calls per connection.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", l.address)
	if err != nil {
		return err
	}
	if l.descriptors != nil {
		ln = l.descriptors.Listener(ln)
	}
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

// Serve accepts connections until Close and hands each to mochi.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			l.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		done, ok := l.admission.admit(l.id, conn, l.rate)
		if !ok {
			conn.Close()
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(connectTimeout))
		if !l.track(conn) {
			done()
			conn.Close()
			return
		}
		go func() {
			defer l.untrack(conn)
			primed, err := readConnect(conn, l.admission.limits.MaxConnectBytes, &l.admission.buffers)
			done()
			if err != nil {
				l.admission.connectFailed(l.id, conn, err)
				return
			}
			if err := establish(l.id, primed); err != nil {
				l.log.Debug("connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (l *tcpListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *tcpListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	c.Close()
}

// Close stops accepting, lets mochi disconnect its sessions, then closes
// whatever connections remain (those still before CONNECT).
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed || l.ln == nil {
		l.closed = true
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	_ = l.ln.Close()
	closeClients(l.id)
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}

// CloseBroker shuts b down as b.Close does, but closes the sessions of
// each listener itself. mochi v2.7.9's closer, Clients.GetByListener,
// read-locks the client map twice; a client connecting or leaving
// between the two locks queues a writer that the second lock waits
// behind, and the broker hangs for good (mochi-mqtt/server#488; a
// reconnect storm ending as the server stops hits it). This closer takes
// the lock once. With every listener closed first, b.Close finds none
// left to close and only stops the hooks.
func CloseBroker(b *mochi.Server) error {
	b.Listeners.CloseAll(func(listener string) {
		for _, cl := range b.Clients.GetAll() {
			if cl.Net.Listener == listener && !cl.Closed() {
				_ = b.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
	return b.Close()
}
