package lwm2m_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// pion/dtls's lines go to the platform's log: its per-record traces below
// debug, so that even a debug log leaves them out. pion's own default
// would build a logger per session and write to stdout.
func TestLwM2MPionLogsToSlog(t *testing.T) {
	for _, tc := range []struct {
		level      slog.Level
		wantTraces bool
	}{
		{slog.LevelDebug - 4, true},
		{slog.LevelDebug, false},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			logs := &logBuffer{}
			f := newFixture(t, func(o *lwm2m.Options) {
				o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: tc.level}))
			})
			f.device("dtls1", true)
			c := f.client(lwm2mclient.Config{Endpoint: "dtls1", PSKIdentity: "dtls1", PSK: lwm2m.PSK(secret)})
			if err := c.Register(context.Background()); err != nil {
				t.Fatal(err)
			}
			// pion traces each flight of the handshake.
			traces := strings.Count(logs.String(), `level=DEBUG-4 msg="[handshake:server]`)
			if tc.wantTraces && traces == 0 {
				t.Errorf("no pion traces in a log at %v:\n%s", tc.level, logs)
			}
			if !tc.wantTraces && traces != 0 {
				t.Errorf("pion's traces in a log at %v:\n%s", tc.level, logs)
			}
		})
	}
}
