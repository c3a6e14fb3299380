package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLimitsConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yml := "limits:\n  auth_failures:\n    max: 5\n    window: 10s\n    ban: 1h\n  mqtt:\n    max_connect_bytes: 4096\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Limits.guardConfig()
	if g.IdentityFailures.Max != 5 || g.IdentityFailures.Window != 10*time.Second || g.IdentityFailures.Ban != time.Hour {
		t.Fatalf("auth_failures: %+v", g.IdentityFailures)
	}
	if g.AddressFailures.Max != 100 {
		t.Fatalf("address_auth_failures lost its default: %+v", g.AddressFailures)
	}
	if m := c.Limits.mqttLimits(); m.MaxConnectBytes != 4096 || m.UplinkRate != 50 || m.RefusalLogRate != 10 {
		t.Fatalf("mqtt limits: %+v", m)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"limits:\n  flapping:\n    max: -1\n", "limits.flapping.max"},
		{"limits:\n  auth_failures:\n    max: 3\n    window: 0s\n", "window and ban"},
		{"limits:\n  mqtt:\n    max_connect_bytes: 10\n", "max_connect_bytes"},
		{"limits:\n  mqtt:\n    max_topic_bytes: 10\n", "max_topic_bytes"},
		{"limits:\n  mqtt:\n    uplink_rate: -1\n", "uplink_rate"},
	} {
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want error containing %q, got %v", tc.yaml, tc.want, err)
		}
	}
}
