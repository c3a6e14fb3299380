package api

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/iotgate/iotgate/servercert"
)

// The API's HTTPS server speaks HTTP/1.1 only (a client that would take
// HTTP/2 gets 1.1) and closes a connection whose TLS handshake does not
// come within the header timeout.
func TestHTTPServerTLS(t *testing.T) {
	s := newLimitedServer(t, Limits{ReadHeaderTimeout: 300 * time.Millisecond})
	s.SetReady(true)
	g, err := servercert.LoadOrCreate(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(g.CertFile, g.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := s.HTTPServer(&tls.Config{Certificates: []tls.Certificate{cert}})
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { hs.Close() })

	ca, err := os.ReadFile(g.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://localhost:" + portOf(ln) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || resp.TLS == nil {
		t.Fatalf("got %d over %s (TLS %v)", resp.StatusCode, resp.Proto, resp.TLS != nil)
	}

	// A client that connects and sends nothing is closed at the timeout.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent client: read %v, want the server to close (EOF)", err)
	}
	if held := time.Since(start); held > 2*time.Second {
		t.Fatalf("silent client held %v, timeout 300 ms", held)
	}
}

func portOf(ln net.Listener) string {
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
