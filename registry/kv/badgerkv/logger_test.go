package badgerkv

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// formatted records whether a log line was formatted.
type formatted struct{ n *int }

func (f formatted) String() string { *f.n++; return "x" }

// TestBadgerLoggerFormatsOnlyWhatIsLogged: Badger logs debug lines on
// every commit; with debug off none of them may be formatted.
func TestBadgerLoggerFormatsOnlyWhatIsLogged(t *testing.T) {
	var buf bytes.Buffer
	var n int
	l := newBadgerLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	l.Debugf("commit %s", formatted{&n})
	l.Infof("compaction %s", formatted{&n})
	if n != 0 || buf.Len() != 0 {
		t.Fatalf("debug and info lines formatted %d times, wrote %q", n, buf.String())
	}
	l.Warningf("slow %s", formatted{&n})
	l.Errorf("failed %s", formatted{&n})
	if n != 2 || !strings.Contains(buf.String(), "component=badger") || !strings.Contains(buf.String(), "level=ERROR msg=\"failed x\"") {
		t.Fatalf("formatted %d times, wrote %q", n, buf.String())
	}
	newBadgerLogger(nil).Errorf("dropped %s", formatted{&n})
	if n != 2 {
		t.Fatal("a nil logger formatted a line")
	}
}
