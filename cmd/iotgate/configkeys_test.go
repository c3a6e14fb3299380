package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key's error names the file, the key's path and its line in the
// file's own terms, on one line, never a Go type.
func TestConfigKeyErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"data_dir: x\nmqtt:\n  listen: \":1883\"\n  tls_listn: \":8883\"\n",
			"mqtt.tls_listn (line 4): unknown key; did you mean tls_listen?"},
		{"log_levl: info\n", "log_levl (line 1): unknown key; did you mean log_level?"},
		{"mqtt:\n  frobnicate: 1\n", "mqtt.frobnicate (line 2): unknown key"},
		{"coap:\n  lifetime_min: soon\n", `coap.lifetime_min (line 2): "soon" is not a duration (such as 30s, 5m or 1h)`},
		{"coap:\n  max_handshakes: many\n", `coap.max_handshakes (line 2): "many" is not a whole number`},
		{"events:\n  max_events: -1\n", `events.max_events (line 2): "-1" is not a whole number, 0 or more`},
		{"api:\n  credentials:\n    - project_id: p\n      tokn: t\n", "api.credentials[0].tokn (line 4): unknown key; did you mean token?"},
		{"api: 8080\n", `api (line 1): want a section of keys, found "8080"`},
		{"api:\n  credentials: p\n", `api.credentials (line 2): want a list, found "p"`},
		{"limits:\n  auth_failures:\n    max: 3\n    windw: 1m\n", "limits.auth_failures.windw (line 4): unknown key; did you mean window?"},
		{"api:\n  listen: [1, 2]\n", "api.listen (line 2): a list is not a string"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadConfig(path)
		want := "config " + path + ": " + tc.want
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", tc.yaml, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "main.") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("%q: %q names a Go type or spans lines", tc.yaml, err)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "", 3}, {"tls_listn", "tls_listen", 1}, {"kitten", "sitting", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("%q %q: %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
