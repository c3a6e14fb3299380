package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDevicesCommandLine(t *testing.T) {
	// An API that creates whatever it is sent.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Auth-Token") != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = w.Write([]byte("{}"))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "d.csv")
	if err := os.WriteFile(file, []byte("node_id,product_id\nn1,p1\nn2,p1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(tokenEnv, "")
	for _, tc := range []struct {
		name   string
		args   []string
		env    string
		code   int
		stdout string
		stderr string
	}{
		{"no command", []string{"devices"}, "", 2, "", "usage:"},
		{"unknown command", []string{"devices", "export"}, "", 2, "", `unknown command "export"`},
		{"help", []string{"devices", "-h"}, "", 0, "iotgate devices import -api URL", ""},
		{"no file", []string{"devices", "import", "-api", srv.URL}, "", 2, "", "one CSV file is required (got 0)"},
		{"two files", []string{"devices", "import", "a.csv", "b.csv"}, "", 2, "", "one CSV file is required (got 2)"},
		{"no token", []string{"devices", "import", "-api", srv.URL, "-project", "p", file}, "", 2, "", "the API token is required"},
		{"bad concurrency", []string{"devices", "import", "-api", srv.URL, "-project", "p", "-token", "tok", "-concurrency", "100", file}, "", 2, "", "concurrency 100: must be 1 to 64"},
		{"flags after the file, token from the environment", []string{"devices", "import", file, "-api", srv.URL, "-project", "p"}, "tok", 0,
			"d.csv: 2 rows: 2 created, 0 already existed, 0 failed", "2/2 rows (100%)"},
		{"wrong token", []string{"devices", "import", "-api", srv.URL, "-project", "p", "-token", "nope", file}, "", 2, "", "the API refused the credential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tokenEnv, tc.env)
			var stdout, stderr strings.Builder
			code := cli(tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), "nope") {
				t.Errorf("the token was printed")
			}
		})
	}
}
