package test

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestStartsOnDefaults runs the binary with no -config in an empty
// directory, as `go run ./cmd/iotgate` does: it must create ./data,
// generate and print one credential, serve /healthz on :8080 and accept
// that credential; a second start must reuse the credential silently.
func TestStartsOnDefaults(t *testing.T) {
	for _, addr := range []string{":8080", ":8443", ":1883", ":8883"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("default port %s is busy on this machine: %v", addr, err)
		}
		l.Close()
	}
	for _, addr := range []string{":5683", ":5684"} {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Skipf("default port %s is busy on this machine: %v", addr, err)
		}
		c.Close()
	}
	coapClient := interopTool(t, "coap-client-notls", "apt-get install libcoap3-bin")
	dir := t.TempDir()
	run := func() string {
		cmd := exec.Command(binary(t))
		cmd.Dir = dir
		var out bytes.Buffer
		w := &lockedWriter{mu: &sync.Mutex{}, b: &out}
		cmd.Stdout, cmd.Stderr = w, w
		snapshot := func() string {
			w.mu.Lock()
			defer w.mu.Unlock()
			return out.String()
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}()
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get("http://127.0.0.1:8080/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("not healthy on defaults:\n%s", snapshot())
			}
			time.Sleep(50 * time.Millisecond)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "data", "credentials.json"))
		if err != nil {
			t.Fatal(err)
		}
		var creds []map[string]string
		if err := json.Unmarshal(raw, &creds); err != nil || len(creds) != 1 {
			t.Fatalf("credentials.json: %v %s", err, raw)
		}
		req, _ := http.NewRequest("GET", "http://127.0.0.1:8080/v5/iot/"+creds[0]["project_id"]+"/products", nil)
		req.Header.Set("X-Auth-Token", creds[0]["token"])
		resp, err := newAPICheck(t, "http://127.0.0.1:8080").client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("generated token refused: %v %v", err, resp)
		}
		resp.Body.Close()
		if st, err := os.Stat(filepath.Join(dir, "data", "master.key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("master key missing or not 0600: %v", err)
		}
		// NoSec answers an IPv4 client on the default ":5683", a
		// dual-stack socket (it did not, until iotgate wrote its own
		// answers: go-coap's were refused by the kernel).
		if got := runTool(t, coapClient, "-m", "get", "coap://127.0.0.1:5683/nothing"); !strings.Contains(got, "4.04") {
			t.Fatalf("coap-client over IPv4 to the default :5683 got %q, want a 4.04", got)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		return snapshot()
	}
	first := run()
	if strings.Count(first, "generated API credentials") != 1 {
		t.Fatalf("first start should print the credential once:\n%s", first)
	}
	if second := run(); strings.Contains(second, "generated API credentials") || strings.Contains(second, "secret_key") {
		t.Fatalf("second start printed credentials again:\n%s", second)
	}
}
