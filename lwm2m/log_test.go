package lwm2m_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

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
