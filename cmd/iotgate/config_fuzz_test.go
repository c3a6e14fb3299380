package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoadConfig: a config file of any bytes loads or fails with an error
// that says it is the config's and where; an accepted config is valid, and
// validating it again changes nothing.
func FuzzLoadConfig(f *testing.F) {
	if example, err := os.ReadFile("../../configs/iotgate.yaml"); err == nil {
		f.Add(example)
	}
	for _, s := range []string{
		"data_dir: /var/lib/iotgate\napi:\n  listen: 127.0.0.1:8080\n  credentials:\n    - project_id: p1\n      access_key: AK1\n      secret_key: SK1\n",
		"api:\n  tls_listen: :8443\n  listen: \"\"\n",
		"data_dir: x\nunknown_key: 1\n",
		"limits:\n  api:\n    rate: 10\n    burst: 0\n",
		"tls_reload_interval: -1s\n",
		"coap:\n  lifetime_min: 1h\n  lifetime_max: 1m\n",
		"events:\n  max_events: 0\n",
		"data_dir: &a x\nlog_level: *a\n",
		"[1, 2]", "", "---\n---\n", "\t",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config") {
				t.Fatalf("error %q does not say it is the config's", err)
			}
			return
		}
		if c.DataDir == "" || c.API.Listen == "" && c.API.TLSListen == "" {
			t.Fatalf("accepted a config without data_dir or API listener: %+v", c)
		}
		again := c
		if err := again.validate(); err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("validating an accepted config again: %v, changed: %v", err, !reflect.DeepEqual(again, c))
		}
	})
}
