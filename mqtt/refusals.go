package mqtt

import (
	"context"
	"log/slog"

	"github.com/iotgate/iotgate/registry/guard"
)

// refusalLog writes the info lines of refusals an attacker can trigger
// at will (refused connections and CONNECTs, limited publishes) through
// a token bucket, so a flood cannot fill the disk: lines over the rate
// are dropped, and the next line written says how many were.
type refusalLog struct {
	log      *slog.Logger
	throttle *guard.Throttle
}

func newRefusalLog(log *slog.Logger, perSecond float64, burst int) *refusalLog {
	return &refusalLog{log: log, throttle: guard.NewThrottle(perSecond, burst)}
}

func (l *refusalLog) refused(msg string, args ...any) {
	if ok, n := l.allow(); ok {
		l.write(n, msg, args...)
	}
}

// allow reports whether a line may be written, and how many were
// suppressed before it. Hot paths call it before building the line's
// arguments, so a suppressed line costs no allocation.
func (l *refusalLog) allow() (ok bool, suppressed uint64) {
	if !l.log.Enabled(context.Background(), slog.LevelInfo) {
		return false, 0
	}
	return l.throttle.Allow()
}

// write writes a line allow admitted.
func (l *refusalLog) write(suppressed uint64, msg string, args ...any) {
	if suppressed > 0 {
		args = append(args, "suppressed_before", suppressed)
	}
	l.log.Info(msg, args...)
}
