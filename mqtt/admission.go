package mqtt

import (
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

	buffers connectBuffers // readConnect's

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
// CONNECT of at most maxBytes bytes (fixed header included), and returns
// the connection with the bytes read put back in front of it. A TLS
// connection completes its handshake here. The buffer starts at
// firstRead bytes (one read takes a whole CONNECT of a device), taken
// from bufs, and grows only as bytes arrive, never past the size the
// header claims.
func readConnect(c net.Conn, maxBytes int, bufs *connectBuffers) (net.Conn, error) {
	buf := bufs.get()
	total := -1 // the CONNECT's size once its fixed header is in
	for total < 0 || len(buf) < total {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), total))
			copy(grown, buf)
			buf = grown
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if total < 0 && len(buf) > 0 {
			var herr error
			if total, herr = connectSize(buf); herr != nil {
				return nil, herr
			}
			if total > maxBytes {
				return nil, fmt.Errorf("%w: %d bytes claimed, at most %d", errConnectTooLarge, total, maxBytes)
			}
		}
		if err != nil && (total < 0 || len(buf) < total) {
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	// Bytes past the CONNECT (a client may send its SUBSCRIBE in the same
	// segment) are mochi's too.
	return &primedConn{Conn: c, pre: buf, full: buf, bufs: bufs}, nil
}

// firstRead is the size of readConnect's first buffer.
const firstRead = 512

// connectBuffers recycles readConnect's first buffers once mochi has
// read them: a reconnect storm would allocate one per connection. The
// zero value is ready; a nil one allocates every buffer.
type connectBuffers struct{ pool sync.Pool }

func (b *connectBuffers) get() []byte {
	if b != nil {
		if a, ok := b.pool.Get().(*[firstRead]byte); ok {
			return a[:0]
		}
	}
	return make([]byte, 0, firstRead)
}

// put takes back a buffer get returned (one grown past firstRead is
// left to the collector).
func (b *connectBuffers) put(buf []byte) {
	if b != nil && cap(buf) == firstRead {
		b.pool.Put((*[firstRead]byte)(buf[:firstRead]))
	}
}

// connectSize reads the fixed header at the start of b: the size of the
// whole packet, which must be a CONNECT, or -1 if b does not hold the
// whole header yet.
func connectSize(b []byte) (int, error) {
	if b[0]>>4 != 1 { // packets.Connect
		return 0, errNotConnect
	}
	remaining := 0
	for i := 1; i < len(b); i++ {
		remaining |= int(b[i]&0x7f) << (7 * (i - 1))
		if b[i]&0x80 == 0 {
			return i + 1 + remaining, nil
		}
		if i == 4 {
			return 0, errors.New("malformed remaining length")
		}
	}
	return -1, nil
}

// primedConn is a connection whose first bytes were read already.
type primedConn struct {
	net.Conn
	pre  []byte // what is left of them
	full []byte // all of them, to give back to bufs once read
	bufs *connectBuffers
}

func (p *primedConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		if p.pre = p.pre[n:]; len(p.pre) == 0 {
			p.bufs.put(p.full)
			p.pre, p.full = nil, nil
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
	outcomes           outcomes
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
