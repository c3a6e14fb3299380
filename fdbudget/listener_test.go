package fdbudget

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/servercert"
)

// serve accepts on ln until it closes and hands each connection to got.
func serve(ln net.Listener, got chan<- net.Conn) {
	for {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		got <- c
	}
}

// closedByServer reports whether the server ended c without a byte.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestListenerRefusesOverThePool(t *testing.T) {
	var logs bytes.Buffer
	b := New(10, slog.New(slog.NewTextHandler(&logs, nil)), guard.NewThrottle(1, 1))
	p := b.Pool("mqtt", 2)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := p.Listener(raw)
	defer ln.Close()
	got := make(chan net.Conn, 10)
	go serve(ln, got)

	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2 := dial(), dial()
	s1, s2 := <-got, <-got
	// Over the pool: closed at accept, twice (the second line is
	// throttled away).
	for range 2 {
		if c := dial(); !closedByServer(t, c) {
			t.Fatal("a connection over the pool was left open")
		}
	}
	if st := p.Stats(); st.Open != 2 || st.Refused != 2 {
		t.Fatalf("stats %+v, want 2 open, 2 refused", st)
	}
	if n := strings.Count(logs.String(), "descriptor budget for connections spent"); n != 1 {
		t.Fatalf("%d refusal lines, want 1 (throttled):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "pool=mqtt spent=pool") {
		t.Fatalf("refusal line does not name the pool and what was spent:\n%s", logs.String())
	}
	// The accepted ones still work.
	if _, err := c1.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(s1, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("accepted connection broken: %v", err)
	}
	// A close gives the descriptor back, once, however often it is
	// called.
	s2.Close()
	s2.Close()
	_ = c2
	if st := p.Stats(); st.Open != 1 || b.Open() != 1 {
		t.Fatalf("after a close: pool %+v, budget open %d; want 1", st, b.Open())
	}
	dial()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted after one closed")
	}
}

// TestListenerUnderTLS: a TLS listener over the pool's gives the
// descriptor back when a connection fails its handshake and is closed.
func TestListenerUnderTLS(t *testing.T) {
	gen, err := servercert.LoadOrCreate(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(gen.CertFile, gen.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	b := New(1, nil, nil)
	p := b.Pool("api", 1)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(p.Listener(raw), &tls.Config{Certificates: []tls.Certificate{cert}})
	defer ln.Close()
	got := make(chan net.Conn, 4)
	go serve(ln, got)
	for i := range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s := <-got
		if _, err := c.Write([]byte("not a TLS hello\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if err := s.(*tls.Conn).Handshake(); err == nil {
			t.Fatal("garbage passed the handshake")
		}
		s.Close()
		c.Close()
		if b.Open() != 0 {
			t.Fatalf("connection %d: budget open %d after the TLS connection closed", i, b.Open())
		}
	}
}
