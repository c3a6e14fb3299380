package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The storm rows compare the median storms of iotgate and the baseline,
// list every storm, and judge the median against the target; a summary
// of one storm reads as before.
func TestReportStormRows(t *testing.T) {
	storm := func(rate, us float64) string {
		return `{"ok": 100, "per_second": ` + ftoa(rate) + `, "cpu": {"server_us_per_op": ` + ftoa(us) + `, "server_cores": 1, "client_us_per_op": 50}}`
	}
	summary := func(reconnect string, rounds ...string) string {
		s := `{"label": "x", "protocols": [{"protocol": "mqtt", "devices": 100, "reconnect": ` + reconnect
		if len(rounds) > 0 {
			s += `, "reconnect_rounds": [` + strings.Join(rounds, ", ") + `]`
		}
		return s + `}]}`
	}
	for _, tc := range []struct {
		name        string
		ours, mochi string
		want        []string
	}{
		{
			name:  "three storms each, median met",
			ours:  summary(storm(9000, 60), storm(8000, 70), storm(9000, 60), storm(9500, 55)),
			mochi: summary(storm(10000, 50), storm(10000, 50), storm(12000, 45), storm(9000, 52)),
			want: []string{
				"| MQTT reconnect storm, secret auth (connects/s) | 9000/s (median; storms 8000 / 9000 / 9500) | mochi 10000/s (median; storms 10000 / 12000 / 9000) | 90% | ≥ 85% | yes |",
				"storms 70 / 60 / 55 µs",
			},
		},
		{
			name:  "one storm, missed",
			ours:  summary(storm(8000, 70)),
			mochi: summary(storm(10000, 50)),
			want:  []string{"| MQTT reconnect storm, secret auth (connects/s) | 8000/s | mochi 10000/s | 80% | ≥ 85% | **no** |"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range map[string]string{"iotgate-mqtt": tc.ours, "mochi-mqtt": tc.mochi} {
				if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			if err := report(&out, dir); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
