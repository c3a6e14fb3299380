package lwm2m

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLevelTrace is below slog's Debug, so pion's per-record trace lines
// stay out of even a debug log.
const pionLevelTrace = slog.LevelDebug - 4

// pionLogger is the one logger every pion/dtls connection gets, writing to
// the platform's slog. Left to itself, pion builds a logger factory for
// each connection (reading its PION_LOG_* environment variables again) and
// five log.Loggers writing to stdout past the structured log: 512 bytes
// held by every DTLS session, 48 allocations per handshake. pion logs at
// debug and trace only.
type pionLogger struct{ log *slog.Logger }

var (
	_ logging.LoggerFactory = pionLogger{}
	_ logging.LeveledLogger = pionLogger{}
)

func newPionLogger(log *slog.Logger) pionLogger {
	return pionLogger{log: log.With("component", "pion-dtls")}
}

// NewLogger returns the shared logger; pion/dtls asks only for "dtls".
func (l pionLogger) NewLogger(string) logging.LeveledLogger { return l }

func (l pionLogger) Trace(msg string)               { l.logf(pionLevelTrace, "%s", msg) }
func (l pionLogger) Tracef(format string, a ...any) { l.logf(pionLevelTrace, format, a...) }
func (l pionLogger) Debug(msg string)               { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Debugf(format string, a ...any) { l.logf(slog.LevelDebug, format, a...) }
func (l pionLogger) Info(msg string)                { l.logf(slog.LevelInfo, "%s", msg) }
func (l pionLogger) Infof(format string, a ...any)  { l.logf(slog.LevelInfo, format, a...) }
func (l pionLogger) Warn(msg string)                { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Warnf(format string, a ...any)  { l.logf(slog.LevelWarn, format, a...) }
func (l pionLogger) Error(msg string)               { l.logf(slog.LevelError, "%s", msg) }
func (l pionLogger) Errorf(format string, a ...any) { l.logf(slog.LevelError, format, a...) }

// logf formats only for an enabled level: pion traces every record.
func (l pionLogger) logf(level slog.Level, format string, a ...any) {
	ctx := context.Background()
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, fmt.Sprintf(format, a...))
	}
}
