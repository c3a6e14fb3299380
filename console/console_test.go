package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Mount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot) // the API
	}), Handler(Endpoints{MQTT: "127.0.0.1:1883", MQTTS: ":8883", CoAP: "[::1]:5683"}))
	tests := []struct {
		name, method, path string
		status             int
		ctype, body        string
		location           string
	}{
		{"index", "GET", "/console/", 200, "text/html; charset=utf-8", `<script type="module" src="app.js">`, ""},
		{"module", "GET", "/console/app.js", 200, "text/javascript; charset=utf-8", "import", ""},
		{"style", "GET", "/console/style.css", 200, "text/css; charset=utf-8", "body", ""},
		{"endpoints", "GET", "/console/endpoints.json", 200, "application/json", `{"mqtt":1883,"mqtts":8883,"coap":5683}`, ""},
		{"certificates page", "GET", "/console/certs.js", 200, "text/javascript; charset=utf-8", "/certificates", ""},
		{"routing page", "GET", "/console/routing.js", 200, "text/javascript; charset=utf-8", "/routing-rule/rules", ""},
		{"head", "HEAD", "/console/dom.js", 200, "text/javascript; charset=utf-8", "", ""},
		{"missing", "GET", "/console/nope.js", 404, "", "", ""},
		{"no slash", "GET", "/console", 301, "", "", "/console/"},
		{"post", "POST", "/console/", 405, "", "", ""},
		{"api untouched", "GET", "/v5/iot/p/devices", 418, "", "", ""},
		{"prefix only", "GET", "/consoles", 418, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if tc.status == 418 {
				if rec.Header().Get("Content-Security-Policy") != "" {
					t.Error("the API's answer got the console's headers")
				}
				return
			}
			if got := rec.Header().Get("Content-Security-Policy"); got != CSP {
				t.Errorf("CSP %q", got)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if tc.ctype != "" && rec.Header().Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tc.ctype)
			}
			if !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("body lacks %q: %.200s", tc.body, rec.Body.String())
			}
			if tc.location != "" && rec.Header().Get("Location") != tc.location {
				t.Errorf("Location %q", rec.Header().Get("Location"))
			}
		})
	}
}

// The files keep to what the CSP allows and to the rule that API values
// go in as text: no inline script, style or event handler attribute, no
// HTML parsing sink, nothing fetched from another origin.
func TestStaticFilesSafe(t *testing.T) {
	entries, err := static.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	sinks := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setTimeout\(['"]`)
	inline := regexp.MustCompile(`(?i)<script(?:[^>]*)>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	remote := regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//`)
	for _, e := range entries {
		b, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.HasSuffix(e.Name(), ".js") && sinks.MatchString(s) {
			t.Errorf("%s uses an HTML or code sink: %q", e.Name(), sinks.FindString(s))
		}
		if strings.HasSuffix(e.Name(), ".html") {
			if inline.MatchString(s) {
				t.Errorf("%s has inline code or style: %q", e.Name(), inline.FindString(s))
			}
			if remote.MatchString(s) {
				t.Errorf("%s loads from another origin: %q", e.Name(), remote.FindString(s))
			}
		}
	}
}

// Every module a file imports is embedded, and every page the header
// links to has a route in app.js: a page added without its file or its
// route fails here, before a browser.
func TestStaticFilesLinked(t *testing.T) {
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	entries, err := static.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := static.ReadFile("static/" + e.Name())
		for _, m := range imports.FindAllStringSubmatch(string(b), -1) {
			if _, err := static.ReadFile("static/" + m[1]); err != nil {
				t.Errorf("%s imports %s, which is not embedded", e.Name(), m[1])
			}
		}
	}
	index, _ := static.ReadFile("static/index.html")
	app, _ := static.ReadFile("static/app.js")
	links := regexp.MustCompile(`href="#/([a-z/]+)"`).FindAllStringSubmatch(string(index), -1)
	if len(links) < 6 {
		t.Fatalf("index.html links to %d pages", len(links))
	}
	for _, l := range links {
		route := "^#\\/" + strings.ReplaceAll(l[1], "/", "\\/") + "$/"
		if !strings.Contains(string(app), route) {
			t.Errorf("the header links to #/%s, which app.js has no route %s for", l[1], route)
		}
	}
}

func TestEndpointsOff(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(Endpoints{}).ServeHTTP(rec, httptest.NewRequest("GET", "/console/endpoints.json", nil))
	body, _ := io.ReadAll(rec.Body)
	var m map[string]int
	if err := json.Unmarshal(body, &m); err != nil || len(m) != 0 {
		t.Fatalf("endpoints with every listener off: %s (%v)", body, err)
	}
}
