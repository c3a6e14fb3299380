package httpchan

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/registry"
)

type caStore map[string]string

func (s caStore) CACert(_ context.Context, project, id string) (*registry.CACert, error) {
	p, ok := s[project+"/"+id]
	if !ok {
		return nil, &registry.NotFoundError{Kind: registry.EntityCertificate, ID: id}
	}
	return &registry.CACert{PEM: p}, nil
}

func action(h registry.HTTPForwarding) *registry.RuleAction {
	return &registry.RuleAction{ID: "a1", ProjectID: "p", Channel: registry.ChannelHTTP, Detail: registry.ChannelDetail{HTTP: &h}}
}

type received struct {
	mu      sync.Mutex
	bodies  []string
	headers []http.Header
}

func (r *received) handler(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
		if status == http.StatusFound {
			http.Redirect(w, req, "/elsewhere", status)
			return
		}
		w.WriteHeader(status)
	}
}

func deliver(t *testing.T, o Options, a *registry.RuleAction) error {
	t.Helper()
	ch, err := Opener(o)(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	return ch.Deliver(context.Background(), &forwarding.Message{RequestID: "r1", Payload: []byte(`{"request_id":"r1"}`)})
}

func TestStatusIsTheAcknowledgement(t *testing.T) {
	for _, tc := range []struct {
		status int
		ok     bool
	}{{200, true}, {204, true}, {202, true}, {302, false}, {400, false}, {500, false}, {503, false}} {
		var rec received
		srv := httptest.NewServer(rec.handler(tc.status))
		err := deliver(t, Options{}, action(registry.HTTPForwarding{URL: srv.URL + "/push"}))
		srv.Close()
		var se *StatusError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%d: %v", tc.status, err)
		case !tc.ok && (!errors.As(err, &se) || se.Code != tc.status):
			t.Errorf("%d: err %v, want a StatusError", tc.status, err)
		}
		if len(rec.bodies) != 1 || rec.bodies[0] != `{"request_id":"r1"}` || rec.headers[0].Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%d: received %v %v", tc.status, rec.bodies, rec.headers)
		}
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	if err := deliver(t, Options{Timeout: 200 * time.Millisecond}, action(registry.HTTPForwarding{URL: srv.URL})); err == nil {
		t.Fatal("a push never answered succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestHTTPSWithUploadedCA(t *testing.T) {
	var rec received
	srv := httptest.NewTLSServer(rec.handler(200))
	defer srv.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	cas := caStore{"p/ca1": caPEM}
	if err := deliver(t, Options{CAs: cas}, action(registry.HTTPForwarding{URL: srv.URL, CertID: "ca1"})); err != nil {
		t.Fatalf("with the uploaded CA: %v", err)
	}
	// httptest's certificate names example.com: SNI sends and checks it.
	if err := deliver(t, Options{CAs: cas}, action(registry.HTTPForwarding{URL: srv.URL, CertID: "ca1", SNIEnable: true, CNName: "example.com:8443"})); err != nil {
		t.Fatalf("with SNI: %v", err)
	}
	if err := deliver(t, Options{CAs: cas}, action(registry.HTTPForwarding{URL: srv.URL, CertID: "ca1", SNIEnable: true, CNName: "other.test"})); err == nil {
		t.Error("a server name the certificate does not hold was accepted")
	}
	// Without it, the system roots do not know the server.
	if err := deliver(t, Options{CAs: cas}, action(registry.HTTPForwarding{URL: srv.URL})); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("system roots accepted a self-signed server: %v", err)
	}
	if _, err := Opener(Options{CAs: cas})(context.Background(), action(registry.HTTPForwarding{URL: srv.URL, CertID: "gone"})); err == nil {
		t.Error("opened with a missing CA")
	}
	if len(rec.bodies) != 2 {
		t.Errorf("server received %d pushes, want 2", len(rec.bodies))
	}
}

func TestSignedPush(t *testing.T) {
	var rec received
	srv := httptest.NewServer(rec.handler(200))
	defer srv.Close()
	now := func() time.Time { return time.UnixMilli(1700000000123) }
	if err := deliver(t, Options{Now: now}, action(registry.HTTPForwarding{URL: srv.URL, SignatureEnable: true, Token: "abc123"})); err != nil {
		t.Fatal(err)
	}
	if err := deliver(t, Options{}, action(registry.HTTPForwarding{URL: srv.URL})); err != nil {
		t.Fatal(err)
	}
	h := rec.headers[0]
	if h.Get("timestamp") != "1700000000123" || len(h.Get("nonce")) != 32 ||
		h.Get("signature") != Signature("abc123", h.Get("timestamp"), h.Get("nonce")) {
		t.Errorf("signed headers %v", h)
	}
	if rec.headers[1].Get("signature") != "" {
		t.Error("unsigned action sent a signature")
	}
	// The order of the three parts does not matter; their content does.
	if Signature("b", "a", "c") != Signature("a", "b", "c") || Signature("a", "b", "c") == Signature("a", "b", "d") {
		t.Error("signature is not over the sorted parts")
	}
}
