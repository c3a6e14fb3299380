package api

import (
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func newLimitedServer(t *testing.T, l Limits) *Server {
	t.Helper()
	return newLoggedServer(t, l, nil)
}

func newLoggedServer(t *testing.T, l Limits, log *slog.Logger) *Server {
	t.Helper()
	reg, _ := testRegistry(t)
	return New(Options{Registry: reg, Limits: l, Logger: log, Credentials: []Credential{
		{ProjectID: "p1", AccessKey: "AKP1", SecretKey: "SKP1", Token: "tok1"}, {ProjectID: "p2", Token: "tok2"}}})
}

// send makes a request from addr and returns the status, the exact body
// and the Retry-After header.
func send(s *Server, addr, token, method, path, body string, header ...string) (int, string, string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = addr
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String()), rec.Header().Get("Retry-After")
}

const throttledBody = `{"error_code":"IOTDA.021101","error_msg":"Request reached the maximum rate limit."}`

// A slow refill (one token per 1,000 s) keeps the buckets where the test
// leaves them however slowly it runs.
const slowRate = 0.001

func TestCredentialRateLimit(t *testing.T) {
	s := newLimitedServer(t, Limits{Rate: slowRate, Burst: 3})
	const addr = "192.0.2.1:40000"
	for i := range 3 {
		if st, body, _ := send(s, addr, "tok1", "GET", "/v5/iot/p1/products", ""); st != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, st, body)
		}
	}
	st, body, retry := send(s, addr, "tok1", "GET", "/v5/iot/p1/products", "")
	if st != 429 || body != throttledBody {
		t.Fatalf("over the burst: %d %s, want 429 %s", st, body, throttledBody)
	}
	if n, err := strconv.Atoi(retry); err != nil || n < 999 || n > 1000 {
		t.Fatalf("Retry-After %q, want the ~1000 s until the next token", retry)
	}
	// Another credential, from the same address, has its own bucket.
	if st, body, _ := send(s, addr, "tok2", "GET", "/v5/iot/p2/products", ""); st != 200 {
		t.Fatalf("other credential: %d %s", st, body)
	}
}

// A request that fails authentication must not spend the bucket of the
// credential it names: otherwise anyone knowing a tenant's AK could
// throttle it.
func TestForgedRequestsDoNotSpendTheNamedCredential(t *testing.T) {
	s := newLimitedServer(t, Limits{Rate: slowRate, Burst: 2})
	auth := "SDK-HMAC-SHA256 Access=AKP1, SignedHeaders=x-sdk-date, Signature=" + strings.Repeat("0", 64)
	for i := range 5 {
		st, body, _ := send(s, "192.0.2.66:1", "", "GET", "/v5/iot/p1/products", "",
			"Authorization", auth, "X-Sdk-Date", time.Now().UTC().Format("20060102T150405Z"))
		if st != 401 {
			t.Fatalf("forged request %d: %d %s", i, st, body)
		}
	}
	for i := range 2 {
		if st, body, _ := send(s, "192.0.2.1:1", "tok1", "GET", "/v5/iot/p1/products", ""); st != 200 {
			t.Fatalf("the real tenant, request %d: %d %s", i, st, body)
		}
	}
}

func TestUnauthenticatedRateLimitPerAddress(t *testing.T) {
	var logs strings.Builder
	s := newLoggedServer(t, Limits{UnauthenticatedRate: slowRate, UnauthenticatedBurst: 3}, slog.New(slog.NewTextHandler(&logs, nil)))
	for _, tc := range []struct {
		addr, token string
		status      int
	}{
		// Three failures use up the address's bucket ...
		{"192.0.2.7:1000", "wrong", 403},
		{"192.0.2.7:1001", "", 401},
		{"192.0.2.7:1002", "wrong", 403},
		// ... after which it is refused before any check, even with a
		// valid token (the check comes before the credential's).
		{"192.0.2.7:1003", "wrong", 429},
		{"192.0.2.7:1004", "tok1", 429},
		// Other addresses are not affected; successes cost nothing.
		{"192.0.2.8:1000", "tok1", 200},
		{"192.0.2.8:1000", "tok1", 200},
		{"192.0.2.8:1000", "tok1", 200},
		{"192.0.2.8:1000", "tok1", 200},
		// IPv6 counts per /64: three failures from three addresses of
		// one /64 ...
		{"[2001:db8:1:2::a]:1", "wrong", 403},
		{"[2001:db8:1:2::b]:1", "wrong", 403},
		{"[2001:db8:1:2:ffff::c]:1", "wrong", 403},
		{"[2001:db8:1:2::d]:1", "tok1", 429},
		// ... and the next /64 is another client.
		{"[2001:db8:1:3::a]:1", "tok1", 200},
		// An IPv4-mapped address is its IPv4 address.
		{"[::ffff:192.0.2.7]:1", "tok1", 429},
	} {
		st, body, _ := send(s, tc.addr, tc.token, "GET", "/v5/iot/p1/products", "")
		if st != tc.status || (st == 429 && body != throttledBody) {
			t.Fatalf("%s token %q: %d %s, want %d", tc.addr, tc.token, st, body, tc.status)
		}
	}
	// The first failure is logged with its address (later ones within
	// the second are counted in the next line), never with the token.
	if !strings.Contains(logs.String(), `msg="api authentication failed" addr=192.0.2.7`) || strings.Contains(logs.String(), "wrong") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

func TestDynamicRegistrationRateLimitPerAddress(t *testing.T) {
	s := newLimitedServer(t, Limits{UnauthenticatedRate: slowRate, UnauthenticatedBurst: 2})
	form := url.Values{"productKey": {"pk"}, "deviceName": {"dn"}, "random": {"r"}, "sign": {strings.Repeat("0", 32)}}.Encode() // an hmacmd5 sign, the default
	post := func(addr string) (int, string, string) {
		return send(s, addr, "", "POST", "/auth/register/device", form, "Content-Type", "application/x-www-form-urlencoded")
	}
	for range 2 {
		if st, body, _ := post("198.51.100.1:1"); st != 200 || !strings.Contains(body, `"code":6250`) {
			t.Fatalf("within the burst: %d %s", st, body)
		}
	}
	// Alibaba's answers are HTTP 200 with the code in the body.
	if st, body, retry := post("198.51.100.1:1"); st != 200 || body != `{"code":429,"message":"too many requests"}` || retry == "" {
		t.Fatalf("over the burst: %d %s, Retry-After %q", st, body, retry)
	}
	if _, body, _ := post("198.51.100.2:1"); !strings.Contains(body, `"code":6250`) {
		t.Fatalf("another address: %s", body)
	}
}

func TestBodyLimit(t *testing.T) {
	s := newLimitedServer(t, Limits{MaxBodyBytes: 1024})
	const want = `{"error_code":"IOTDA.021105","error_msg":"The content reported in a single request cannot exceed 1024 bytes."}`
	product := `{"product_id":"pb","name":"pb","device_type":"t","protocol_type":"MQTT","data_format":"json",` +
		`"service_capabilities":[{"service_id":"s","service_type":"s"}]}`
	for _, tc := range []struct {
		name    string
		body    string
		chunked bool
		status  int
	}{
		// JSON allows the padding.
		{"at the limit", product + strings.Repeat(" ", 1024-len(product)), false, 201},
		{"over, announced", product + strings.Repeat(" ", 1025-len(product)), false, 413},
		{"over, chunked", product + strings.Repeat(" ", 1025-len(product)), true, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/v5/iot/p1/products", io.NopCloser(strings.NewReader(tc.body)))
			req.ContentLength = int64(len(tc.body))
			if tc.chunked {
				req.ContentLength = -1
			}
			req.Header.Set("X-Auth-Token", "tok1")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tc.status || (tc.status == 413 && strings.TrimSpace(rec.Body.String()) != want) {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
		})
	}
}

// An announced body over the limit is refused before it is read, and
// before the credential is checked.
func TestBodyLimitBeforeReading(t *testing.T) {
	s := newLimitedServer(t, Limits{MaxBodyBytes: 1024})
	r := &countingReader{}
	req := httptest.NewRequest("POST", "/v5/iot/p1/products", r)
	req.ContentLength = 1 << 30
	req.Header.Set("X-Auth-Token", "wrong")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 413 || r.n != 0 {
		t.Fatalf("got %d after reading %d bytes", rec.Code, r.n)
	}
}

type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) { r.n += len(p); return len(p), nil }

func TestAddrLimiterBoundedTable(t *testing.T) {
	l := newAddrLimiter(1, 1, 2)
	now := time.Now()
	a, b, c, d := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4")
	// Looking is free: an address that only passes leaves no bucket.
	if blocked, _ := l.blocked(a, now); blocked || len(l.buckets) != 0 {
		t.Fatalf("blocked %v, %d buckets after a look", blocked, len(l.buckets))
	}
	for _, x := range []netip.Addr{a, b} {
		if ok, _ := l.take(x, now); !ok {
			t.Fatalf("%s: first request refused", x)
		}
	}
	// The table is full of busy buckets: c and d share the overflow one.
	if ok, _ := l.take(c, now); !ok {
		t.Fatal("c: the overflow bucket refused its first request")
	}
	if ok, _ := l.take(d, now); ok {
		t.Fatal("d: the overflow bucket, already used by c, allowed another request")
	}
	if len(l.buckets) != 2 {
		t.Fatalf("%d buckets, want 2", len(l.buckets))
	}
	// While the table is full, an unknown address is judged by the
	// overflow bucket before it is let in.
	if blocked, _ := l.blocked(netip.MustParseAddr("192.0.2.5"), now); !blocked {
		t.Fatal("an unknown address is not blocked by the spent overflow bucket")
	}
	// Once a and b have refilled, they are dropped for new addresses.
	later := now.Add(2 * time.Second)
	if ok, _ := l.take(d, later); !ok {
		t.Fatal("d: refused after the table was swept")
	}
	if _, held := l.buckets[d]; !held || len(l.buckets) != 1 {
		t.Fatalf("after the sweep: %v", l.buckets)
	}
}

func TestLimitConnsPerAddress(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	var mu sync.Mutex
	ln := LimitConnsPerAddress(raw, 2, slog.New(slog.NewTextHandler(lockedWriter{&mu, logs}, nil)))
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn { t.Helper(); return dialFrom(t, raw.Addr(), from) }
	closedByServer := func(c net.Conn) bool { return closedByPeer(c, 2*time.Second) }
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(2 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	dial("127.0.0.1")
	first := next()
	dial("127.0.0.1")
	next()
	if third := dial("127.0.0.1"); !closedByServer(third) {
		t.Fatal("a third connection from 127.0.0.1 was kept open")
	}
	mu.Lock()
	if !strings.Contains(logs.String(), "api connection refused: address has max_conns_per_address open") ||
		!strings.Contains(logs.String(), "addr=127.0.0.1 open=2") {
		t.Errorf("the refusal is not logged: %s", logs)
	}
	mu.Unlock()
	// Another address has its own allowance.
	dial("127.0.0.2")
	next()
	// Closing one of 127.0.0.1's frees its slot.
	first.Close()
	dial("127.0.0.1")
	next()
}

// dialFrom connects to to from the local address from, closing the
// connection when the test ends.
func dialFrom(t *testing.T, to net.Addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer reports whether the peer closed c within wait.
func closedByPeer(c net.Conn, wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestRefusalLogAtMostOneLineASecond(t *testing.T) {
	var b strings.Builder
	r := &refusalLog{log: slog.New(slog.NewTextHandler(&b, nil))}
	now := time.Now()
	r.refused(now, "refused", "addr", "192.0.2.1")
	for i := range 1000 {
		r.refused(now.Add(time.Duration(i)*time.Millisecond/2), "refused", "addr", "192.0.2.1")
	}
	r.refused(now.Add(time.Second), "refused", "addr", "192.0.2.2")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "refusals_not_logged=0") ||
		!strings.Contains(lines[1], "addr=192.0.2.2 refusals_not_logged=1000") {
		t.Fatalf("log:\n%s", b.String())
	}
}

// TestConnTableSharesAFullPoolFairly: when the table holds its capacity,
// a newcomer from an address holding less takes the oldest connection of
// the address holding the most, until the two are within one; an address
// at its fair share is refused instead.
func TestConnTableSharesAFullPoolFairly(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	var mu sync.Mutex
	table := NewConnTable(10, 4, slog.New(slog.NewTextHandler(lockedWriter{&mu, logs}, nil)))
	ln := table.Listener(raw)
	defer ln.Close()
	go func() {
		for {
			if _, err := ln.Accept(); err != nil { // held open: the server side never closes
				return
			}
		}
	}()
	dial := func(from string) net.Conn { t.Helper(); return dialFrom(t, raw.Addr(), from) }
	// A short wait: a connection left open just times out.
	closed := func(c net.Conn) bool { return closedByPeer(c, 300*time.Millisecond) }
	waitOpen := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); table.Open() != n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("table holds %d connections, want %d", table.Open(), n)
			}
		}
	}

	var flood []net.Conn
	for range 4 {
		flood = append(flood, dial("127.0.0.2"))
		waitOpen(len(flood))
	}
	for _, tc := range []struct {
		from    string
		evicted int // index into flood of the connection that goes; -1: the newcomer is refused
	}{
		{"127.0.0.1", 0},  // .2 holds 4, .1 none: .2's oldest goes
		{"127.0.0.1", 1},  // .2 holds 3, .1 one: .2's next oldest
		{"127.0.0.1", -1}, // .2 and .1 hold 2 each: a third for .1 would be more than its share
		{"127.0.0.3", 2},  // .2 (or .1) holds 2, .3 none
	} {
		c := dial(tc.from)
		if tc.evicted < 0 {
			if !closed(c) {
				t.Fatalf("a connection from %s over its fair share was kept", tc.from)
			}
			continue
		}
		if closed(c) {
			t.Fatalf("the newcomer from %s was refused", tc.from)
		}
		if tc.from == "127.0.0.3" { // .1 and .2 tie: either may give one up
			continue
		}
		if !closed(flood[tc.evicted]) {
			t.Fatalf("newcomer from %s: the flood's connection %d was not evicted", tc.from, tc.evicted)
		}
		waitOpen(4)
	}
	waitOpen(4)
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"api connection evicted", "evicted=127.0.0.2 for=127.0.0.1", "none by an address holding more than its share"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}
