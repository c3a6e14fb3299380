package servercert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pair is a generated CA and server certificate in its own directory.
type pair struct {
	Generated
	cert, key []byte
}

func newPair(t *testing.T) pair {
	t.Helper()
	g, err := LoadOrCreate(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := pair{Generated: g}
	if p.cert, err = os.ReadFile(g.CertFile); err != nil {
		t.Fatal(err)
	}
	if p.key, err = os.ReadFile(g.KeyFile); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p pair) serial(t *testing.T) *big.Int {
	t.Helper()
	c, err := tls.X509KeyPair(p.cert, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber
}

// install writes a certificate and key where the reloader reads them.
func install(t *testing.T, certFile, keyFile string, cert, key []byte) {
	t.Helper()
	if err := os.WriteFile(certFile, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsServer serves TLS with the reloader's certificate on loopback and
// returns a function that handshakes and reports the serial presented.
func tlsServer(t *testing.T, r *Reloader, cas ...pair) func() *big.Int {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	roots := x509.NewCertPool()
	for _, ca := range cas {
		pem, err := os.ReadFile(ca.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots.AppendCertsFromPEM(pem)
	}
	return func() *big.Int {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestReloaderSwapsAndKeepsOldOnBadFiles(t *testing.T) {
	a, b := newPair(t), newPair(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	install(t, certFile, keyFile, a.cert, a.key)
	logs := &logBuffer{}
	r, err := NewReloader(certFile, keyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	handshake := tlsServer(t, r, a, b)
	if got := handshake(); got.Cmp(a.serial(t)) != 0 {
		t.Fatalf("first handshake: serial %x, want A's %x", got, a.serial(t))
	}

	install(t, certFile, keyFile, b.cert, b.key)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := handshake(); got.Cmp(b.serial(t)) != 0 {
		t.Fatalf("after reload: serial %x, want B's %x", got, b.serial(t))
	}
	if !strings.Contains(logs.String(), "tls certificate reloaded") {
		t.Fatalf("no reload log line: %s", logs)
	}

	expired := &Reloader{certFile: certFile, keyFile: keyFile, log: r.log, now: func() time.Time { return time.Now().AddDate(5, 0, 0) }}
	for _, tc := range []struct {
		name      string
		cert, key []byte
		reloader  *Reloader
		want      string
	}{
		{"garbage certificate", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"), b.key, r, "failed to find any PEM data"},
		{"half-written key", b.cert, b.key[:len(b.key)/2], r, "failed to find any PEM data"},
		{"key of another certificate", b.cert, a.key, r, "private key does not match public key"},
		{"expired", b.cert, b.key, expired, "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.reloader == expired {
				expired.cert.Store(r.Certificate())
			}
			install(t, certFile, keyFile, tc.cert, tc.key)
			err := tc.reloader.Reload()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload: %v, want an error containing %q", err, tc.want)
			}
			if got := tc.reloader.Certificate().Leaf.SerialNumber; got.Cmp(b.serial(t)) != 0 {
				t.Fatalf("serving serial %x after a bad file, want B's %x", got, b.serial(t))
			}
			if got := handshake(); got.Cmp(b.serial(t)) != 0 {
				t.Fatalf("handshake after a bad file: serial %x, want B's %x", got, b.serial(t))
			}
			if !strings.Contains(logs.String(), "still serving the previous one") {
				t.Fatalf("the refusal is not logged: %s", logs)
			}
		})
	}
}

func TestReloaderWatchPicksUpChangedFiles(t *testing.T) {
	a, b := newPair(t), newPair(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	install(t, certFile, keyFile, a.cert, a.key)
	r, err := NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	handshake := tlsServer(t, r, a, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Watch(ctx, 10*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// A bad write first (the key of A under B's certificate) is skipped;
	// the good one after it is served.
	install(t, certFile, keyFile, b.cert, a.key)
	time.Sleep(50 * time.Millisecond)
	if got := handshake(); got.Cmp(a.serial(t)) != 0 {
		t.Fatalf("after a mismatched pair: serial %x, want A's", got)
	}
	install(t, certFile, keyFile, b.cert, b.key)
	deadline := time.Now().Add(5 * time.Second)
	for handshake().Cmp(b.serial(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not pick up the new certificate within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReloadIfChangedSkipsUnchangedFiles(t *testing.T) {
	a := newPair(t)
	logs := &logBuffer{}
	r, err := NewReloader(a.CertFile, a.KeyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Break the files without changing their stamps: nothing is read.
	st, _ := os.Stat(a.CertFile)
	if err := os.WriteFile(a.CertFile, bytes.Repeat([]byte{'x'}, int(st.Size())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(a.CertFile, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := r.ReloadIfChanged(); err != nil || logs.String() != "" {
		t.Fatalf("unchanged stamps: err %v, logs %q", err, logs)
	}
	if err := os.Chtimes(a.CertFile, st.ModTime().Add(time.Second), st.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := r.ReloadIfChanged(); err == nil {
		t.Fatal("a changed, broken file was not read")
	}
	// The same broken file is not retried (nor logged) on every poll.
	n := strings.Count(logs.String(), "not reloaded")
	if err := r.ReloadIfChanged(); err != nil || strings.Count(logs.String(), "not reloaded") != n {
		t.Fatalf("a bad file is retried without a change: %v", err)
	}
}

func TestLoadOrCreateReusesAndRenews(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	first, err := LoadOrCreate(dir, now)
	if err != nil || !first.Created {
		t.Fatalf("first: %+v %v", first, err)
	}
	serial := func() *big.Int {
		c, err := tls.LoadX509KeyPair(first.CertFile, first.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber
	}
	s1 := serial()
	again, err := LoadOrCreate(dir, now.Add(time.Hour))
	if err != nil || again.Created || serial().Cmp(s1) != 0 {
		t.Fatalf("second start: %+v %v, serial changed %v", again, err, serial().Cmp(s1) != 0)
	}
	// Within renewBefore of the end, the server certificate is renewed
	// under the same CA.
	ca, _ := os.ReadFile(first.CAFile)
	late, err := LoadOrCreate(dir, now.Add(serverValidity-renewBefore/2))
	if err != nil || !late.Created || serial().Cmp(s1) == 0 {
		t.Fatalf("near expiry: %+v %v", late, err)
	}
	if ca2, _ := os.ReadFile(first.CAFile); !bytes.Equal(ca, ca2) {
		t.Fatal("renewal replaced the CA")
	}
}
