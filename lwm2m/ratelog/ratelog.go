// Package ratelog writes log lines under a token-bucket budget, so that a
// flood of refusals or failed handshakes cannot fill the disk: lines over
// the budget are counted, not written, and the next line written says
// how many were suppressed before it.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults of New's rate and burst: enough for an operator to see every
// refusal of a misconfigured device or two, a bounded trickle under a
// flood.
const (
	DefaultPerSecond = 10
	DefaultBurst     = 50
)

// Logger writes lines to an slog.Logger at most perSecond a second on
// average, with bursts of up to burst lines. One budget serves every line
// it writes. It is safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	rate  float64 // tokens a nanosecond
	burst float64
	now   func() time.Time

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed uint64
}

// New returns a Logger over log; perSecond or burst <= 0 take the
// defaults. now is the clock (nil: time.Now).
func New(log *slog.Logger, perSecond float64, burst int, now func() time.Time) *Logger {
	if perSecond <= 0 {
		perSecond = DefaultPerSecond
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	if now == nil {
		now = time.Now
	}
	return &Logger{log: log, rate: perSecond / float64(time.Second), burst: float64(burst), now: now,
		tokens: float64(burst), last: now()}
}

// Log writes one line at level, or counts it as suppressed when the
// budget is spent. A line written after suppressed ones carries their
// count as "suppressed". Lines below the logger's level cost no budget.
func (l *Logger) Log(ctx context.Context, level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(ctx, level) {
		return
	}
	n, ok := l.take()
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(ctx, level, msg, args...)
}

// Info is Log at info.
func (l *Logger) Info(msg string, args ...any) {
	l.Log(context.Background(), slog.LevelInfo, msg, args...)
}

// take spends a token: ok, with the lines suppressed since the last one
// written; or not ok, counted as suppressed.
func (l *Logger) take() (suppressed uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.burst, l.tokens+float64(d)*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return 0, false
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return suppressed, true
}
