package fdbudget

import (
	"net"
	"sync"
)

// Listener wraps ln so that every connection it returns holds one of
// the pool's descriptors until it is closed. A connection accepted while
// the pool or its budget is spent is closed at once, before a byte is
// read, counted in Stats.Refused and logged; Accept then waits for the
// next one.
//
// Accepted and closed, rather than left in the kernel's backlog: a
// connection left there is established for its peer, which sends its
// CONNECT or request and waits for an answer that never comes, while
// the backlog, once full, makes the kernel drop new handshakes unseen.
// Neither the peer nor the operator would learn why; a close tells the
// peer at once, and the count and the log tell the operator. The
// descriptor accept takes for that instant is the reserve's.
//
// Wrap ln before anything that may close a connection it accepted
// (TLS, a per-address cap), so that their closes give the descriptor
// back.
func (p *Pool) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, pool: p}
}

type listener struct {
	net.Listener
	pool *Pool
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		spent := l.pool.acquire()
		if spent == "" {
			return &conn{Conn: c, pool: l.pool}, nil
		}
		l.pool.refuse(c, spent)
	}
}

// refuse closes c, which came when what was spent ("pool" or "budget")
// had no descriptor left.
func (p *Pool) refuse(c net.Conn, spent string) {
	p.refused.Add(1)
	b := p.budget
	// Logged before the close, so that the line is there by the time
	// the peer sees its connection end.
	if ok, suppressed := b.logs.Allow(); ok {
		args := []any{"pool", p.name, "spent", spent, "remote", c.RemoteAddr().String(),
			"pool_open", p.open.Load(), "pool_limit", p.limit, "budget_open", b.open.Load(), "budget_limit", b.limit}
		if suppressed > 0 {
			args = append(args, "suppressed_before", suppressed)
		}
		b.log.Info("connection refused: descriptor budget for connections spent", args...)
	}
	c.Close()
}

// conn gives its descriptor back on its first Close.
type conn struct {
	net.Conn
	pool *Pool
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.pool.Release)
	return err
}
