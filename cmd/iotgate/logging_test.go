package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(line string) error
	}{
		{"json", func(line string) error {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				return err
			}
			if m["msg"] != "hello" || m["level"] != "WARN" || m["device_id"] != "d1" || m["time"] == nil {
				return errUnexpected(line)
			}
			return nil
		}},
		{"text", func(line string) error {
			if !strings.Contains(line, "level=WARN msg=hello device_id=d1") || json.Valid([]byte(line)) {
				return errUnexpected(line)
			}
			return nil
		}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			c := defaultConfig()
			c.LogFormat, c.LogLevel = tc.format, "warn"
			log, err := newLogger(&c, &buf)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("below the level")
			log.Warn("hello", "device_id", "d1")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d lines, want 1 (info is below warn): %q", len(lines), buf.String())
			}
			if err := tc.check(lines[0]); err != nil {
				t.Fatal(err)
			}
		})
	}
}

type errUnexpected string

func (e errUnexpected) Error() string { return "unexpected line: " + string(e) }
