package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// The API listeners hand /fw/... to the firmware handler and everything
// else, /fw itself included, to the API.
func TestMountFirmware(t *testing.T) {
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-Handler", name) })
	}
	h := mountFirmware(named("api"), named("fw"))
	for path, want := range map[string]string{"/fw/abc": "fw", "/fw/": "fw", "/fw": "api", "/v5/iot/p/devices": "api", "/firmware": "api"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if got := rec.Header().Get("X-Handler"); got != want {
			t.Errorf("%s served by %q, want %q", path, got, want)
		}
	}
}

// coap.firmware.http_url is read as written.
func TestConfigFirmwareHTTPURL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("coap:\n  firmware:\n    http_url: https://iot.example.com:8443/gate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.CoAP.Firmware.HTTPURL != "https://iot.example.com:8443/gate" {
		t.Fatalf("http_url %q", c.CoAP.Firmware.HTTPURL)
	}
}
