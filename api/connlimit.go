package api

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// LimitConnsPerAddress wraps ln so that at most max connections from one
// source address (IPv4 address, IPv6 /64) are open at once; a
// connection over the cap is closed as soon as it is accepted, before a
// byte is read, so a client holding many slow connections cannot take
// the server's sockets from everyone else. Refusals are logged to log at
// info, at most a line a second (nil: not logged). max <= 0 returns ln.
func LimitConnsPerAddress(ln net.Listener, max int, log *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &addrCapListener{Listener: ln, limit: max, open: make(map[netip.Addr]int), refusals: &refusalLog{log: log}}
}

type addrCapListener struct {
	net.Listener
	limit    int
	refusals *refusalLog

	mu   sync.Mutex
	open map[netip.Addr]int // only addresses with open connections
}

func (l *addrCapListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := connAddr(c)
		l.mu.Lock()
		n := l.open[a]
		if n < l.limit {
			l.open[a] = n + 1
		}
		l.mu.Unlock()
		if n >= l.limit {
			// Logged before the close, so that the log line is there by
			// the time the client sees its connection end.
			l.refusals.refused(time.Now(), "api connection refused: address has max_conns_per_address open", "addr", a, "open", n)
			c.Close()
			continue
		}
		return &cappedConn{Conn: c, l: l, addr: a}, nil
	}
}

func (l *addrCapListener) release(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[a] <= 1 {
		delete(l.open, a)
	} else {
		l.open[a]--
	}
}

type cappedConn struct {
	net.Conn
	l    *addrCapListener
	addr netip.Addr
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}

func connAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return limitUnit(ta.AddrPort().Addr())
	}
	return clientAddr(c.RemoteAddr().String())
}
