package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// The REST storms measure the server, and on a machine whose cores the
// fleet shares with it every microsecond the client spends is one the
// server cannot. net/http's client cost 76 µs of CPU per device create
// (two goroutine hand-offs per request, a header map and a context per
// call), half of what the server spent. So the fleet speaks HTTP/1.1 over
// its own keep-alive connections: each request is appended into a reused
// buffer and each answer read from a reused reader, which is all a client
// of a JSON API needs (status, Content-Length or chunked body, Connection).

// httpConns is a bounded pool of keep-alive connections to one server.
type httpConns struct {
	addr    string // host:port, also the Host header
	timeout time.Duration
	slots   chan struct{}  // one per connection that may exist
	idle    chan *httpConn // connections ready for a request
}

func newHTTPConns(addr string, conns int, timeout time.Duration) *httpConns {
	conns = max(conns, 1)
	return &httpConns{addr: addr, timeout: timeout,
		slots: make(chan struct{}, conns), idle: make(chan *httpConn, conns)}
}

// httpConn is one connection, used by one request at a time.
type httpConn struct {
	c    net.Conn
	r    *bufio.Reader
	req  []byte // the request being written
	body []byte // the last answer's body
}

// httpAnswer is a response: its status and body. Body is valid until
// the connection's next request.
type httpAnswer struct {
	Status int
	Body   []byte
}

// errStaleConn is a kept-alive connection the server had closed before
// this request reached it: nothing was read, so sending again is safe.
var errStaleConn = errors.New("kept-alive connection closed by the server")

// do sends one request and reads its answer. body may be nil; read is
// called with the answer before the connection is reused.
func (p *httpConns) do(ctx context.Context, method, path string, headers []string, body []byte, read func(httpAnswer) error) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	for attempt := 0; ; attempt++ {
		var hc *httpConn
		reused := false
		// A retry dials: the other idle connections went quiet as long as
		// the stale one (the server's idle timeout closes them all).
		if attempt == 0 {
			select {
			case hc = <-p.idle:
				reused = true
			default:
			}
		}
		if hc == nil {
			c, err := (&net.Dialer{Timeout: p.timeout}).DialContext(ctx, "tcp", p.addr)
			if err != nil {
				return err
			}
			hc = &httpConn{c: c, r: bufio.NewReaderSize(c, 4096)}
		}
		a, keep, err := hc.roundTrip(ctx, p.addr, method, path, headers, body, p.timeout)
		if err == nil {
			err = read(a)
		}
		if keep && err == nil {
			p.idle <- hc // cannot block: at most cap(slots) connections exist
			return nil
		}
		hc.c.Close()
		if errors.Is(err, errStaleConn) {
			if reused && attempt == 0 {
				continue
			}
			err = errors.New("server closed the connection without an answer")
		}
		return err
	}
}

// roundTrip writes the request and reads the answer; keep says whether
// the connection may carry another request.
func (hc *httpConn) roundTrip(ctx context.Context, host, method, path string, headers []string, body []byte, timeout time.Duration) (a httpAnswer, keep bool, err error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := hc.c.SetDeadline(deadline); err != nil {
		return a, false, err
	}
	// A cancelled context ends a request in flight at once.
	stop := context.AfterFunc(ctx, func() { hc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	b := hc.req[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for i := 0; i+1 < len(headers); i += 2 {
		b = append(b, headers[i]...)
		b = append(b, ": "...)
		b = append(b, headers[i+1]...)
		b = append(b, "\r\n"...)
	}
	if body != nil {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	hc.req = b
	if _, err := hc.c.Write(b); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return a, false, errStaleConn
		}
		return a, false, fmt.Errorf("write request: %w", err)
	}
	a, keep, err = hc.readAnswer(method)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return a, keep, err
}

// readAnswer reads a status line, headers and body.
func (hc *httpConn) readAnswer(method string) (a httpAnswer, keep bool, err error) {
	line, err := hc.line()
	if err != nil {
		if len(line) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			// EOF: the server closed the connection before our request
			// came. Reset: it closed it as our request came, with the
			// request unread (the keep-alive race), so not handled.
			return a, false, errStaleConn
		}
		return a, false, fmt.Errorf("read status line: %w", err)
	}
	// "HTTP/1.1 201 Created"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return a, false, fmt.Errorf("malformed status line %q", line)
	}
	a.Status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return a, false, fmt.Errorf("malformed status line %q", line)
	}
	keep = line[7] == '1' // HTTP/1.0 closes unless told otherwise; we never ask
	length, chunked := -1, false
	for {
		h, err := hc.line()
		if err != nil {
			return a, false, fmt.Errorf("read headers: %w", err)
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return a, false, fmt.Errorf("malformed header %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return a, false, fmt.Errorf("malformed Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = keep && !bytes.EqualFold(value, []byte("close"))
		}
	}
	hc.body = hc.body[:0]
	switch {
	case method == "HEAD" || a.Status == 204 || a.Status == 304 || a.Status < 200:
	case chunked:
		if err := hc.readChunks(); err != nil {
			return a, false, err
		}
	case length >= 0:
		hc.body = slices.Grow(hc.body, length)[:length]
		if _, err := io.ReadFull(hc.r, hc.body); err != nil {
			return a, false, fmt.Errorf("read body: %w", err)
		}
	default: // the body runs to the end of the connection
		body, err := io.ReadAll(hc.r)
		if err != nil {
			return a, false, fmt.Errorf("read body: %w", err)
		}
		hc.body, keep = body, false
	}
	a.Body = hc.body
	return a, keep, nil
}

func (hc *httpConn) readChunks() error {
	for {
		line, err := hc.line()
		if err != nil {
			return fmt.Errorf("read chunk size: %w", err)
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
		if err != nil {
			return fmt.Errorf("malformed chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, then the empty line
				t, err := hc.line()
				if err != nil {
					return fmt.Errorf("read trailer: %w", err)
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		start := len(hc.body)
		hc.body = slices.Grow(hc.body, int(n))[:start+int(n)]
		if _, err := io.ReadFull(hc.r, hc.body[start:]); err != nil {
			return fmt.Errorf("read chunk: %w", err)
		}
		if crlf, err := hc.line(); err != nil || len(crlf) != 0 {
			return fmt.Errorf("chunk not followed by CRLF")
		}
	}
}

// line reads one CRLF-terminated line without its terminator; the slice
// is valid until the next read.
func (hc *httpConn) line() ([]byte, error) {
	l, err := hc.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("header line longer than 4 KiB")
		}
		return l, err
	}
	return bytes.TrimRight(l, "\r\n"), nil
}
