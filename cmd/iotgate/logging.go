package main

import (
	"fmt"
	"io"
	"log/slog"
)

// Log formats (log_format).
const (
	logText = "text" // slog's key=value lines
	logJSON = "json" // one JSON object a line, for log collectors
)

// newLogger is the platform's logger at log_level, in log_format, onto w.
func newLogger(c *Config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("config: log_level: %w", err)
	}
	o := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case logText, "":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case logJSON:
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("config: log_format: %q is not text or json", c.LogFormat)
}
