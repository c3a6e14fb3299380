package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthCommand(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"status":"unavailable","store":"unreachable"}`))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)

	// An address nothing listens on: bound, then closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/healthz"
	ln.Close()

	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"healthy", []string{"health", "-url", srv.URL + "/healthz"}, 0, ""},
		{"unavailable", []string{"health", "-url", srv.URL + "/down"}, 1, `503 Service Unavailable: {"status":"unavailable","store":"unreachable"}`},
		{"not found", []string{"health", "-url", srv.URL + "/nothing"}, 1, "404 Not Found"},
		{"no answer in time", []string{"health", "-url", srv.URL + "/slow", "-timeout", "200ms"}, 1, "context deadline exceeded"},
		{"nothing listening", []string{"health", "-url", closed}, 1, "connection refused"},
		{"bad url", []string{"health", "-url", "::"}, 1, "missing protocol scheme"},
		{"stray argument", []string{"health", "extra"}, 2, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := cli(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if tc.wantErr == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.wantErr)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("took %v: the timeout was not applied", time.Since(start))
			}
		})
	}
}
