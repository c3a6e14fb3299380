package lwm2m_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// logBuffer collects the server's log lines.
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

// A registration's start and end are logged at debug: at info a fleet
// re-registering after an outage would write a line per device. A
// refused Register is logged at both levels.
func TestRegistrationLogLevels(t *testing.T) {
	for _, tc := range []struct {
		level    slog.Level
		sessions bool
	}{{slog.LevelInfo, false}, {slog.LevelDebug, true}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			logs := &logBuffer{}
			f := newFixture(t, func(o *lwm2m.Options) {
				o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: tc.level}))
			})
			f.device("logged", false)
			c := f.client(lwm2mclient.Config{Endpoint: "logged"})
			ctx := context.Background()
			for range 2 { // a registration, then one replacing it
				if err := c.Register(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Deregister(ctx); err != nil {
				t.Fatal(err)
			}
			if err := f.client(lwm2mclient.Config{Endpoint: "nobody"}).Register(ctx); err == nil {
				t.Fatal("an unknown endpoint registered")
			}
			out := logs.String()
			for _, line := range []string{"lwm2m registered", "lwm2m registration ended"} {
				if strings.Contains(out, line) != tc.sessions {
					t.Errorf("%q logged: %v, want %v", line, !tc.sessions, tc.sessions)
				}
			}
			if !strings.Contains(out, "lwm2m registration refused") {
				t.Error("the refused Register was not logged")
			}
		})
	}
}

// A failed DTLS handshake of a client that proved its address (a wrong
// key here) is logged at info with its PSK identity and address, and
// such lines share the log budget of refusals: a flood of them writes
// LogBurst lines, then counts the rest.
func TestDTLSHandshakeFailuresLogged(t *testing.T) {
	logs := &logBuffer{}
	f := newFixture(t, func(o *lwm2m.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.LogPerSecond, o.LogBurst = 0.01, 3
		o.HandshakeTimeout = time.Second
	})
	f.device("keyed", true)
	for range 4 {
		_, err := lwm2mclient.Dial(context.Background(), lwm2mclient.Config{Server: f.srv.DTLSAddr().String(),
			Endpoint: "keyed", PSKIdentity: "keyed", PSK: []byte("not the key"), RequestTimeout: time.Second})
		if err == nil {
			t.Fatal("a wrong key completed the handshake")
		}
	}
	// The server sees the failure when its Finished check fails.
	deadline := time.Now().Add(3 * time.Second)
	for strings.Count(logs.String(), "dtls handshake failed") < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	out := logs.String()
	lines := strings.Count(out, "dtls handshake failed")
	if lines != 3 {
		t.Fatalf("%d handshake failure lines, want the budget's 3:\n%s", lines, out)
	}
	if !strings.Contains(out, "level=INFO msg=\"dtls handshake failed\" addr=127.0.0.1:") || !strings.Contains(out, "identity=keyed") {
		t.Errorf("a failure line lacks the level, address or identity:\n%s", out)
	}
	// The budget is spent: a refusal now is counted, not written.
	if err := f.client(lwm2mclient.Config{Endpoint: "nobody"}).Register(context.Background()); err == nil {
		t.Fatal("an unknown endpoint registered")
	}
	if strings.Contains(logs.String(), "lwm2m registration refused") {
		t.Error("a refusal was written past the shared budget")
	}
}
