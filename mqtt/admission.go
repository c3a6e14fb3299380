package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/iotgate/iotgate/registry/guard"
)

// admission is what stands between accept and mochi: the checks that
// cost an unauthenticated client nothing it can make the server hold.
// A new connection is refused at once (closed, nothing answered) when
// its listener is over its connect rate, its address is banned, or its
// address (or everyone) already has too many connections that have not
// sent a whole CONNECT. Then admission itself reads the CONNECT, at most
// Limits.MaxConnectBytes of it, into a buffer that grows only as bytes
// arrive; mochi, which would allocate the size a fixed header claims
// before reading a byte of the body, sees the connection only once the
// whole CONNECT is in. Both listeners (MQTT and MQTTS) share one.
type admission struct {
	limits Limits
	guard  guard.Guard
	logs   *refusalLog
	stats  *counters

	mu        sync.Mutex
	pending   int
	byAddress map[netip.Prefix]int32
}

func newAdmission(l Limits, g guard.Guard, logs *refusalLog, st *counters) *admission {
	return &admission{limits: l, guard: g, logs: logs, stats: st, byAddress: make(map[netip.Prefix]int32)}
}

// connectLimiter is a listener's budget of new connections a second;
// nil: unlimited.
func (a *admission) connectLimiter() *rate.Limiter {
	if a.limits.ConnectRate <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(a.limits.ConnectRate), max(a.limits.ConnectBurst, 1))
}

// admit decides whether to take a new connection; if so, done must be
// called once the connection has sent its CONNECT or ended.
func (a *admission) admit(listener string, c net.Conn, lim *rate.Limiter) (done func(), ok bool) {
	addr := remoteAddr(c)
	if lim != nil && !lim.Allow() {
		a.stats.refusedConnections.Add(1)
		a.logs.refused("connection refused: listener over its connect rate", "listener", listener, "remote", addr)
		return nil, false
	}
	if a.guard.AddressBanned(addr) {
		a.stats.bannedConnects.Add(1)
		if ok, n := a.logs.allow(); ok {
			a.logs.write(n, "connection refused: address banned", "listener", listener, "remote", addr)
		}
		return nil, false
	}
	key := guard.AddressKey(addr)
	a.mu.Lock()
	if a.pending >= a.limits.MaxPending || int(a.byAddress[key]) >= a.limits.MaxPendingPerAddress {
		all := a.pending
		a.mu.Unlock()
		a.stats.refusedConnections.Add(1)
		a.logs.refused("connection refused: too many connections before CONNECT", "listener", listener,
			"remote", addr, "pending", all)
		return nil, false
	}
	a.pending++
	a.byAddress[key]++
	a.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.pending--
			if a.byAddress[key]--; a.byAddress[key] <= 0 {
				delete(a.byAddress, key)
			}
			a.mu.Unlock()
		})
	}, true
}

// errConnectTooLarge and errNotConnect end a connection whose first
// packet is not a CONNECT of acceptable size.
var (
	errConnectTooLarge = errors.New("CONNECT larger than the limit")
	errNotConnect      = errors.New("first packet is not a CONNECT")
)

// readConnect reads the connection's first packet, which must be a
// CONNECT of at most max bytes (fixed header included), and returns the
// connection with those bytes put back in front of it. A TLS connection
// completes its handshake here.
func readConnect(c net.Conn, maxBytes int) (net.Conn, error) {
	r := bufio.NewReaderSize(c, 16) // bufio's minimum: only the fixed header goes through it
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if first>>4 != 1 { // packets.Connect
		return nil, errNotConnect
	}
	head := []byte{first}
	var remaining int
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		head = append(head, b)
		remaining |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return nil, errors.New("malformed remaining length")
		}
	}
	if total := len(head) + remaining; total > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes claimed, at most %d", errConnectTooLarge, total, maxBytes)
	}
	// Grows with the bytes received, not with the length claimed.
	buf := append(head, make([]byte, 0, min(remaining, 512))...)
	for len(buf) < len(head)+remaining {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		want := min(cap(buf), len(head)+remaining)
		n, err := r.Read(buf[len(buf):want])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	// Whatever bufio read past the CONNECT (a client may send its
	// SUBSCRIBE in the same segment) belongs to mochi too.
	if n := r.Buffered(); n > 0 {
		rest, _ := r.Peek(n)
		buf = append(buf, rest...)
	}
	return &primedConn{Conn: c, pre: buf}, nil
}

// primedConn is a connection whose first bytes were read already.
type primedConn struct {
	net.Conn
	pre []byte
}

func (p *primedConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		if p.pre = p.pre[n:]; len(p.pre) == 0 {
			p.pre = nil
		}
		return n, nil
	}
	return p.Conn.Read(b)
}

// remoteAddr is the connection's peer address (invalid if not TCP).
func remoteAddr(c net.Conn) netip.Addr {
	if p, ok := c.(*primedConn); ok {
		c = p.Conn
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// counters are the server's refusal counters (see Stats).
type counters struct {
	credentialChecks   atomic.Uint64
	bannedConnects     atomic.Uint64
	refusedConnections atomic.Uint64
	oversizedConnects  atomic.Uint64
	limitedPublishes   atomic.Uint64
}

// connectFailed logs why a connection ended before its CONNECT was in:
// an oversized or foreign first packet at info (rate-limited), an
// ordinary end (timeout, reset, TLS failure) at debug.
func (a *admission) connectFailed(listener string, c net.Conn, err error) {
	switch {
	case errors.Is(err, errConnectTooLarge):
		a.stats.oversizedConnects.Add(1)
		a.logs.refused("connection closed: CONNECT too large", "listener", listener, "remote", remoteAddr(c), "err", err)
	case errors.Is(err, errNotConnect):
		a.logs.refused("connection closed: first packet is not a CONNECT", "listener", listener, "remote", remoteAddr(c))
	default:
		a.logs.log.Debug("connection ended before CONNECT", "listener", listener, "remote", remoteAddr(c), "err", err)
	}
}
