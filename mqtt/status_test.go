package mqtt

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

// A device's sessions are logged at debug: at info a reconnect storm of
// a fleet would write two lines per device. A refused CONNECT is logged
// at both levels.
func TestSessionLogLevels(t *testing.T) {
	for _, tc := range []struct {
		level    slog.Level
		sessions bool
	}{{slog.LevelInfo, false}, {slog.LevelDebug, true}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			e := newEnvLogging(t, tc.level)
			e.secretDevice("dev_log", "secret-log-0001", "", false)
			c := e.mustConnect(dial{id: "dev_log", secret: "secret-log-0001"})
			e.waitStatus("dev_log", registry.StatusOnline)
			c.Disconnect(0)
			e.waitStatus("dev_log", registry.StatusOffline)
			e.refused(dial{id: "dev_log", secret: "not-the-secret"}, 0x04)
			both := func() bool {
				logs := e.logs.String()
				return strings.Contains(logs, "device connected") && strings.Contains(logs, "device disconnected")
			}
			if tc.sessions {
				// The end is logged just after the status changes.
				eventually(t, both, "the session's start and end to be logged")
			} else if logs := e.logs.String(); strings.Contains(logs, "device connected") || strings.Contains(logs, "device disconnected") {
				t.Errorf("a session was logged at info:\n%s", logs)
			}
			if !strings.Contains(e.logs.String(), "mqtt connection refused") {
				t.Error("the refused CONNECT was not logged")
			}
		})
	}
}
