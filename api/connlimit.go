package api

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// LimitConnsPerAddress wraps ln so that at most max connections from one
// source address (IPv4 address, IPv6 /64) are open at once; a
// connection over the cap is closed as soon as it is accepted, before a
// byte is read, so a client holding many slow connections cannot take
// the server's sockets from everyone else. Refusals are logged to log at
// info, at most a line a second (nil: not logged). max <= 0 returns ln.
// It is a ConnTable of its own with no capacity.
func LimitConnsPerAddress(ln net.Listener, max int, log *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	return NewConnTable(max, 0, log).Listener(ln)
}

// ConnTable holds the open connections of a group of listeners by
// source address (IPv4 address, IPv6 /64): the listeners that draw on
// one descriptor pool share one table.
//
// A connection from an address that holds perAddr is closed at accept.
// When the table holds capacity connections (the pool's size: beyond it
// the pool would close the connection anyway, whoever it came from), a
// new one is taken only by evicting the oldest connection of the
// address holding the most, and only when that address holds at least
// two more than the newcomer's: so a flood from a few addresses, each
// under perAddr, can fill the pool but never keep out an address
// holding less than its fair share, and the flood's oldest connections
// (a slow client's, near their header timeout) are the ones that go.
type ConnTable struct {
	perAddr, capacity int
	refusals          *refusalLog
	evictions         *refusalLog

	mu    sync.Mutex
	total int
	open  map[netip.Addr]*addrConns // only addresses with open connections
}

// addrConns are one address's open connections, oldest first.
type addrConns struct{ conns []*cappedConn }

// NewConnTable is a table capping each address at perAddr (<= 0: no
// cap) and, when capacity > 0, sharing capacity fairly as above.
// Refusals and evictions are logged to log at info, at most a line a
// second each (nil: not logged).
func NewConnTable(perAddr, capacity int, log *slog.Logger) *ConnTable {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ConnTable{perAddr: perAddr, capacity: capacity, refusals: &refusalLog{log: log},
		evictions: &refusalLog{log: log}, open: make(map[netip.Addr]*addrConns)}
}

// Listener wraps ln: its connections are held in t.
func (t *ConnTable) Listener(ln net.Listener) net.Listener {
	return &tableListener{Listener: ln, t: t}
}

type tableListener struct {
	net.Listener
	t *ConnTable
}

func (l *tableListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if cc := l.t.admit(c); cc != nil {
			return cc, nil
		}
	}
}

// admit adds c to the table, evicting a connection to make room if the
// table is full and fairness allows, or closes c and returns nil.
func (t *ConnTable) admit(c net.Conn) *cappedConn {
	a := connAddr(c)
	t.mu.Lock()
	mine := t.open[a]
	n := 0
	if mine != nil {
		n = len(mine.conns)
	}
	if t.perAddr > 0 && n >= t.perAddr {
		total := t.total
		t.mu.Unlock()
		// Logged before the close, so that the log line is there by the
		// time the client sees its connection end.
		t.refusals.refused(time.Now(), "api connection refused: address has max_conns_per_address open", "addr", a, "open", n,
			"total", total, "capacity", t.capacity)
		c.Close()
		return nil
	}
	var victim *cappedConn
	if t.capacity > 0 && t.total >= t.capacity {
		heavy := t.heaviestLocked()
		if heavy == nil || len(heavy.conns) < n+2 {
			t.mu.Unlock()
			t.refusals.refused(time.Now(), "api connection refused: the API's connections are all in use, none by an address holding more than its share",
				"addr", a, "open", n, "total", t.total)
			c.Close()
			return nil
		}
		victim = heavy.conns[0]
		t.removeLocked(victim)
	}
	cc := &cappedConn{Conn: c, t: t, addr: a}
	if mine == nil {
		mine = &addrConns{}
		t.open[a] = mine
	}
	mine.conns = append(mine.conns, cc)
	t.total++
	t.mu.Unlock()
	if victim != nil {
		t.evictions.refused(time.Now(), "api connection evicted: the API's connections are all in use; the address holding the most gives its oldest to a newcomer",
			"evicted", victim.addr, "for", a)
		victim.Close()
	}
	return cc
}

// heaviestLocked is the address holding the most connections.
func (t *ConnTable) heaviestLocked() *addrConns {
	var heavy *addrConns
	for _, ac := range t.open {
		if heavy == nil || len(ac.conns) > len(heavy.conns) {
			heavy = ac
		}
	}
	return heavy
}

// removeLocked takes c out of the table; false if it was not in it (it
// was evicted).
func (t *ConnTable) removeLocked(c *cappedConn) bool {
	ac := t.open[c.addr]
	if ac == nil {
		return false
	}
	i := slices.Index(ac.conns, c)
	if i < 0 {
		return false
	}
	ac.conns = slices.Delete(ac.conns, i, i+1)
	if len(ac.conns) == 0 {
		delete(t.open, c.addr)
	}
	t.total--
	return true
}

// Open is the number of connections the table holds.
func (t *ConnTable) Open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

type cappedConn struct {
	net.Conn
	t    *ConnTable
	addr netip.Addr
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.t.mu.Lock()
		c.t.removeLocked(c)
		c.t.mu.Unlock()
	})
	return err
}

func connAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return limitUnit(ta.AddrPort().Addr())
	}
	return clientAddr(c.RemoteAddr().String())
}
