package transport

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLevelTrace is below slog's Debug, so pion's per-record trace lines
// stay out of even a debug log.
const pionLevelTrace = slog.LevelDebug - 4

// PionLogger is the one logger every pion/dtls connection gets, writing to
// the platform's slog. Left to itself, pion builds a logger factory for
// each connection (reading its PION_LOG_* environment variables again) and
// five log.Loggers writing to stdout past the structured log: 512 bytes
// held by every DTLS session, 48 allocations per handshake. pion logs at
// debug and trace only.
type PionLogger struct{ log *slog.Logger }

var (
	_ logging.LoggerFactory = PionLogger{}
	_ logging.LeveledLogger = PionLogger{}
)

// NewPionLogger writes pion's lines to log, tagged component=pion-dtls.
func NewPionLogger(log *slog.Logger) PionLogger {
	return PionLogger{log: log.With("component", "pion-dtls")}
}

// NewLogger returns the shared logger; pion/dtls asks only for "dtls".
func (l PionLogger) NewLogger(string) logging.LeveledLogger { return l }

func (l PionLogger) Trace(msg string)               { l.logf(pionLevelTrace, "%s", msg) }
func (l PionLogger) Tracef(format string, a ...any) { l.logf(pionLevelTrace, format, a...) }
func (l PionLogger) Debug(msg string)               { l.logf(slog.LevelDebug, "%s", msg) }
func (l PionLogger) Debugf(format string, a ...any) { l.logf(slog.LevelDebug, format, a...) }
func (l PionLogger) Info(msg string)                { l.logf(slog.LevelInfo, "%s", msg) }
func (l PionLogger) Infof(format string, a ...any)  { l.logf(slog.LevelInfo, format, a...) }
func (l PionLogger) Warn(msg string)                { l.logf(slog.LevelWarn, "%s", msg) }
func (l PionLogger) Warnf(format string, a ...any)  { l.logf(slog.LevelWarn, format, a...) }
func (l PionLogger) Error(msg string)               { l.logf(slog.LevelError, "%s", msg) }
func (l PionLogger) Errorf(format string, a ...any) { l.logf(slog.LevelError, format, a...) }

// logf formats only for an enabled level: pion traces every record.
func (l PionLogger) logf(level slog.Level, format string, a ...any) {
	ctx := context.Background()
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, fmt.Sprintf(format, a...))
	}
}
