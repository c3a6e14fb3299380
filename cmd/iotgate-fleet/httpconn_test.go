package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cannedServer answers each request read from a connection with the next
// of answers (raw HTTP), then does what after says: "" keeps the
// connection, "close" closes it after the answer.
// closeHow is what cannedServer does after an answer.
type closeHow int

const (
	keepOpen closeHow = iota
	closeConn
	resetConn // close with SO_LINGER 0: the peer gets a reset, as from a server closing with a request unread
)

func cannedServer(t *testing.T, answers []string, closeAfter map[int]closeHow) (addr string, requests *atomic.Int64, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	requests, conns = new(atomic.Int64), new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					i := int(requests.Add(1) - 1)
					if i >= len(answers) {
						return
					}
					io.WriteString(c, answers[i])
					switch closeAfter[i] {
					case closeConn:
						return
					case resetConn:
						time.Sleep(50 * time.Millisecond) // the answer is read first
						c.(*net.TCPConn).SetLinger(0)
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), requests, conns
}

func TestHTTPConnsReadsEveryBodyFraming(t *testing.T) {
	tests := []struct {
		name       string
		answer     string
		wantStatus int
		wantBody   string
	}{
		{"content-length", "HTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}", 201, `{"a":"bcd"}`},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n7;ext=1\r\n:\"bcd\"}\r\n0\r\nX-Trailer: 1\r\n\r\n", 200, `{"a":"bcd"}`},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", 204, ""},
		{"header case", "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}", 400, "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The same answer twice on one connection: the framing must
			// leave the reader exactly at the second answer.
			addr, _, conns := cannedServer(t, []string{tt.answer, tt.answer}, nil)
			p := newHTTPConns(addr, 1, 5*time.Second)
			for range 2 {
				err := p.do(context.Background(), "POST", "/x", []string{"X-Auth-Token", "t"}, []byte("{}"), func(a httpAnswer) error {
					if a.Status != tt.wantStatus || string(a.Body) != tt.wantBody {
						return fmt.Errorf("got %d %q, want %d %q", a.Status, a.Body, tt.wantStatus, tt.wantBody)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1 kept alive", n)
			}
		})
	}
}

func TestHTTPConnsReconnectsAfterClose(t *testing.T) {
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	// Answer 0 says Connection: close; answer 1 comes on a connection the
	// server closes without saying so, which the next request finds stale
	// (EOF); answer 2's connection is reset, as when a server closes a
	// kept-alive connection just as a request comes.
	addr, requests, conns := cannedServer(t,
		[]string{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", ok, ok, ok},
		map[int]closeHow{0: closeConn, 1: closeConn, 2: resetConn})
	p := newHTTPConns(addr, 1, 5*time.Second)
	for i := range 4 {
		if err := p.do(context.Background(), "GET", "/", nil, nil, func(a httpAnswer) error { return nil }); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if i == 2 {
			time.Sleep(100 * time.Millisecond) // past the reset
		}
	}
	if r, c := requests.Load(), conns.Load(); r != 4 || c != 4 {
		t.Errorf("%d requests on %d connections, want 4 on 4", r, c)
	}
}

func TestHTTPConnsErrors(t *testing.T) {
	tests := []struct {
		name, answer, want string
	}{
		{"not http", "SSH-2.0-OpenSSH\r\n", "malformed status line"},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed Content-Length"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "read body"},
		{"no answer", "", "without an answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _, _ := cannedServer(t, []string{tt.answer}, map[int]closeHow{0: closeConn})
			p := newHTTPConns(addr, 1, 5*time.Second)
			err := p.do(context.Background(), "GET", "/", nil, nil, func(httpAnswer) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestHTTPConnsCancelEndsRequestInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts and never answers
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	p := newHTTPConns(ln.Addr().String(), 1, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err = p.do(ctx, "GET", "/", nil, nil, func(httpAnswer) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
}

func TestAppendJSONString(t *testing.T) {
	for in, want := range map[string]string{
		"plain-1":   `"plain-1"`,
		`a"b\c`:     `"a\"b\\c"`,
		"tab\tnl\n": `"tab\u0009nl\u000a"`,
		"ünï":       `"ünï"`,
	} {
		if got := string(appendJSONString(nil, in)); got != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestHTTPConnsAfterIdleTimeout: when the server's idle timeout has
// closed every kept-alive connection, each request still succeeds: the
// retry after a stale connection dials instead of taking the next stale
// one from the pool (which made 32 of 100 commands fail after a long
// hold, two stale connections per failure).
func TestHTTPConnsAfterIdleTimeout(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // so the first requests overlap and open a connection each
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	const n = 4
	p := newHTTPConns(strings.TrimPrefix(srv.URL, "http://"), n, 5*time.Second)
	get := func() error {
		return p.do(context.Background(), "GET", "/", nil, nil, func(httpAnswer) error { return nil })
	}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); _ = get() }()
	}
	wg.Wait()
	if len(p.idle) != n {
		t.Fatalf("%d idle connections, want %d", len(p.idle), n)
	}
	time.Sleep(300 * time.Millisecond) // past the server's idle timeout
	for i := range n {
		if err := get(); err != nil {
			t.Fatalf("request %d after the idle timeout: %v", i, err)
		}
	}
}
