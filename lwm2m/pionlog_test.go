package lwm2m

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/iotgate/iotgate/registry"
)

// lockedBuffer is a log destination for handlers written from several
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// pion's lines go to the platform's log, below debug for its per-record
// traces, through one logger shared by every session (pion's own default
// builds one per connection and writes to stdout).
func TestLwM2MPionLogsToSlog(t *testing.T) {
	for _, tc := range []struct {
		level      slog.Level
		wantTraces bool
	}{
		{pionLevelTrace, true},
		{slog.LevelDebug, false},
	} {
		var out lockedBuffer
		log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tc.level}))
		sec := RegistrySecurity{Registry: nodeMap{
			"n1": {DeviceID: "p_n1", Auth: registry.AuthInfo{Type: registry.AuthSecret, Secret: "00112233"}},
		}}
		cfg := dtlsConfig(sec, 5*time.Second, log)
		if f, ok := cfg.LoggerFactory.(pionLogger); !ok || f.NewLogger("dtls") != f {
			t.Fatalf("pion gets logger factory %T, want the shared pionLogger", cfg.LoggerFactory)
		}
		l, err := listenDTLS("127.0.0.1:0", cfg, 4, log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		accepted := make(chan error, 1)
		go func() {
			c, err := l.AcceptWithContext(ctx)
			if err == nil {
				c.Close()
			}
			accepted <- err
		}()
		c, err := dtls.DialWithContext(ctx, "udp", l.Addr().(*net.UDPAddr), &dtls.Config{
			PSK:             func([]byte) ([]byte, error) { return []byte{0x00, 0x11, 0x22, 0x33}, nil },
			PSKIdentityHint: []byte("n1"),
			CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		c.Close()
		if err := <-accepted; err != nil {
			t.Fatalf("accept: %v", err)
		}
		cancel()
		l.Close()
		// pion traces each flight; its debug lines are rarer (a record
		// queued until its keys are ready, one that fails to decrypt).
		traces := strings.Count(out.String(), "level=DEBUG-4 msg=\"[handshake:server]")
		if tc.wantTraces && traces == 0 {
			t.Errorf("no pion traces in a log at %v:\n%s", tc.level, out.String())
		}
		if !tc.wantTraces && traces != 0 {
			t.Errorf("pion's traces in a log at %v:\n%s", tc.level, out.String())
		}
	}
}
