package test

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotgate/iotgate/servercert"
)

// TestTLSCertificateReload: the API's HTTPS listener and MQTTS serve the
// configured certificate files; after the files are replaced, SIGHUP
// (polling off) and, in a second run, the file poll alone make both
// serve the new certificate without a restart, and a broken file keeps
// the previous one and says why in the log.
func TestTLSCertificateReload(t *testing.T) {
	a, b := genCert(t), genCert(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	a.install(t, certFile, keyFile)
	g := StartGate(t, GateOptions{Extra: "tls_reload_interval: 0s\n"})
	g.Stop()
	// Both listeners on the same files; the harness's config lists api
	// and mqtt, so their certificate keys are appended under them.
	cfg, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	files := "  tls_cert_file: " + certFile + "\n  tls_key_file: " + keyFile + "\n"
	s := []byte(strings.Replace(string(cfg), "  credentials:\n", files+"  credentials:\n", 1))
	s = []byte(strings.Replace(string(s), "mqtt:\n", "mqtt:\n"+files, 1))
	if err := os.WriteFile(g.Config, s, 0o600); err != nil {
		t.Fatal(err)
	}
	g.Restart()

	roots := x509.NewCertPool()
	roots.AddCert(a.ca)
	roots.AddCert(b.ca)
	serial := func(addr string) *big.Int {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake with %s: %v", addr, err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
	apiAddr := "127.0.0.1:" + g.APIS[strings.LastIndex(g.APIS, ":")+1:]
	expect := func(want generated, within time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			api, mqtts := serial(apiAddr), serial(g.MQTTS)
			if api.Cmp(want.serial) == 0 && mqtts.Cmp(want.serial) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: API serves %x, MQTTS %x, want %x; logs:\n%s", what, api, mqtts, want.serial, g.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	expect(a, 0, "at start")

	// Without polling, new files are served once SIGHUP asks.
	b.install(t, certFile, keyFile)
	time.Sleep(300 * time.Millisecond)
	expect(a, 0, "new files before SIGHUP")
	g.signal(syscall.SIGHUP)
	expect(b, 5*time.Second, "after SIGHUP")

	// A broken certificate file: the previous certificate stays, and the
	// log says why.
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	waitLog(t, g, "tls certificate not reloaded; still serving the previous one")
	expect(b, 0, "after a broken file")

	// With polling, a change is picked up without a signal.
	g.Stop()
	s, err = os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.Config, []byte(strings.Replace(string(s), "tls_reload_interval: 0s", "tls_reload_interval: 200ms", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	b.install(t, certFile, keyFile)
	g.Restart()
	expect(b, 0, "after the restart")
	a.install(t, certFile, keyFile)
	expect(a, 5*time.Second, "after the files changed, polled")
}

type generated struct {
	ca        *x509.Certificate
	serial    *big.Int
	cert, key []byte
}

func genCert(t *testing.T) generated {
	t.Helper()
	g, err := servercert.LoadOrCreate(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var out generated
	if out.cert, err = os.ReadFile(g.CertFile); err != nil {
		t.Fatal(err)
	}
	if out.key, err = os.ReadFile(g.KeyFile); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(out.cert, out.key)
	if err != nil {
		t.Fatal(err)
	}
	out.serial = pair.Leaf.SerialNumber
	ca, err := tls.LoadX509KeyPair(g.CAFile, filepath.Join(filepath.Dir(g.CAFile), "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	out.ca = ca.Leaf
	return out
}

// install replaces the files the way a certificate tool does: each
// written to a temporary name and renamed over the old one.
func (c generated) install(t *testing.T, certFile, keyFile string) {
	t.Helper()
	for _, f := range []struct {
		name string
		b    []byte
	}{{keyFile, c.key}, {certFile, c.cert}} {
		if err := os.WriteFile(f.name+".new", f.b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.name+".new", f.name); err != nil {
			t.Fatal(err)
		}
	}
}

func waitLog(t *testing.T, g *Gate, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.Logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the logs:\n%s", s, g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
