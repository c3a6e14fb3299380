package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoggerBudget(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 2, 3, func() time.Time { return now })
	lines := func() []string {
		s := strings.TrimSpace(buf.String())
		buf.Reset()
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	for _, st := range []struct {
		name      string
		advance   time.Duration
		write     int
		want      int
		lastHas   string
		lastLacks string
	}{
		{name: "a burst spends the bucket", write: 10, want: 3, lastLacks: "suppressed"},
		{name: "half a second refills one line", advance: 500 * time.Millisecond, write: 5, want: 1, lastHas: "suppressed=7"},
		{name: "the count restarts once reported", advance: 500 * time.Millisecond, write: 1, want: 1, lastHas: "suppressed=4"},
		{name: "a long pause refills only the burst", advance: time.Hour, write: 5, want: 3, lastLacks: "suppressed"},
		{name: "debug lines cost nothing", advance: time.Hour, write: 0, want: 0},
	} {
		now = now.Add(st.advance)
		for range st.write {
			l.Info("refused", "addr", "127.0.0.1:1")
		}
		if st.name == "debug lines cost nothing" {
			for range 100 {
				l.Log(t.Context(), slog.LevelDebug, "noise")
			}
			for range 3 {
				l.Info("refused")
			}
			st.want = 3
		}
		got := lines()
		if len(got) != st.want {
			t.Fatalf("%s: %d lines, want %d:\n%s", st.name, len(got), st.want, strings.Join(got, "\n"))
		}
		if len(got) == 0 {
			continue
		}
		last := got[len(got)-1]
		if st.lastHas != "" && !strings.Contains(last, st.lastHas) {
			t.Errorf("%s: last line %q lacks %q", st.name, last, st.lastHas)
		}
		if st.lastLacks != "" && strings.Contains(last, st.lastLacks) {
			t.Errorf("%s: last line %q has %q", st.name, last, st.lastLacks)
		}
	}
}
