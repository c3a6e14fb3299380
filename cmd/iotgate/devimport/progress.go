package devimport

import (
	"fmt"
	"io"
	"time"
)

// terminalEvery paces the line rewritten in place on a terminal: faster
// than the eye needs is wasted writes.
const terminalEvery = 100 * time.Millisecond

// progress writes the import's progress: on a terminal one line
// rewritten in place (\r), elsewhere (a log, a pipe) a line every
// interval, so a log is not flooded nor left silent.
type progress struct {
	w        io.Writer // nil: no progress
	terminal bool
	every    time.Duration // between lines when not a terminal
	start    time.Time
	last     time.Time // the last line written (start: the first is due after an interval)
}

// update reports s if its interval has passed, or unconditionally when
// final (which also ends a terminal's line).
func (p *progress) update(s *Summary, final bool) {
	if p.w == nil {
		return
	}
	now := time.Now()
	every := p.every
	if p.terminal {
		every = terminalEvery
	}
	if !final && now.Sub(p.last) < every {
		return
	}
	p.last = now
	line := progressLine(s, now.Sub(p.start))
	switch {
	case p.terminal && final:
		fmt.Fprintf(p.w, "\r%s\n", line)
	case p.terminal:
		fmt.Fprintf(p.w, "\r%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

func progressLine(s *Summary, elapsed time.Duration) string {
	pct := 100.0
	if s.Rows > 0 {
		pct = 100 * float64(s.Done) / float64(s.Rows)
	}
	rate := 0.0
	if secs := elapsed.Seconds(); secs > 0 {
		rate = float64(s.Done) / secs
	}
	return fmt.Sprintf("%d/%d rows (%3.0f%%): %d created, %d already existed, %d failed, %.0f rows/s",
		s.Done, s.Rows, pct, s.Created, s.Existed, s.Failed, rate)
}
