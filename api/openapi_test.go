package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/iotgate/iotgate/registry/batchtask"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/labstack/echo/v4"
)

// servedSpec fetches GET /openapi.json from s, unauthenticated, and
// loads and validates it as an OpenAPI 3 document.
func servedSpec(t *testing.T, s *Server) *openapi3.T {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("load the served description: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the served description is not valid OpenAPI 3: %v", err)
	}
	return doc
}

func TestOpenAPISpec(t *testing.T) {
	s, _ := newTestServer(t)
	doc := servedSpec(t, s)
	if doc.Components.Schemas["Error"] == nil || doc.Components.SecuritySchemes["token"] == nil {
		t.Fatal("the description lacks the error body or the token security scheme")
	}
	// The error answers shared through the YAML anchor reach every
	// authenticated operation once converted to JSON.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if strings.HasPrefix(path, "/v5/") && op.Responses.Value("401") == nil {
				t.Errorf("%s %s: no 401 answer", method, path)
			}
		}
	}
}

// echoParam is a path parameter as echo writes it (:name).
var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// TestOpenAPIRoutes checks that the description and the router agree:
// every route New registers (echo's Routes, with every optional route
// group switched on) has an operation of the same method and path, and
// every operation a route. A route added without an operation fails the
// first loop; an operation without its route (a typo, a route removed)
// the second; a new optional route group must be switched on below.
func TestOpenAPIRoutes(t *testing.T) {
	reg, st := testRegistry(t)
	s := New(Options{Registry: reg, Router: reg.Router(), Bans: guard.NewLocal(guard.Defaults()),
		Credentials: []Credential{{ProjectID: "p1", Token: "tok1"}},
		BatchTasks:  batchtask.New(batchtask.Options{Store: st, Kinds: batchtask.DeviceKinds(reg)})})
	doc := servedSpec(t, s)

	type op struct{ method, path string }
	var routes []op
	for _, r := range s.Echo().Routes() {
		// A group's middleware registers catch-all routes that answer
		// 404 ("no such API"): not routes of the API.
		if r.Method == echo.RouteNotFound {
			continue
		}
		routes = append(routes, op{r.Method, echoParam.ReplaceAllString(r.Path, "{$1}")})
	}
	if len(routes) < 40 {
		t.Fatalf("only %d routes registered: %v", len(routes), routes)
	}
	for _, r := range routes {
		item := doc.Paths.Value(r.path)
		if item == nil || item.GetOperation(r.method) == nil {
			t.Errorf("route %s %s has no operation in api/openapi.yaml", r.method, r.path)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !slices.Contains(routes, op{method, path}) {
				t.Errorf("operation %s %s in api/openapi.yaml has no route", method, path)
			}
		}
	}
}

func TestYAMLToJSON(t *testing.T) {
	for _, tc := range []struct{ yaml, json string }{
		{"a: 1\nb: x\nc: true\nd: null\ne: 1.5", `{"a":1,"b":"x","c":true,"d":null,"e":1.5}`},
		// Timestamps stay as written.
		{"when: 2026-12-07\nat: 2026-12-07T08:15:00.000Z", `{"at":"2026-12-07T08:15:00.000Z","when":"2026-12-07"}`},
		// Anchors and merge keys, as openapi.yaml's shared error answers.
		{"x: &e {\"400\": bad}\nop: {<<: *e, \"200\": ok}", `{"op":{"200":"ok","400":"bad"},"x":{"400":"bad"}}`},
		{"- [1, 2]\n- {k: v}", `[[1,2],{"k":"v"}]`},
	} {
		got, err := yamlToJSON([]byte(tc.yaml))
		if err != nil || string(got) != tc.json {
			t.Errorf("%q: got %s, %v; want %s", tc.yaml, got, err, tc.json)
		}
	}
	// A mapping with a non-string key has no JSON form.
	if got, err := yamlToJSON([]byte("200: ok")); err == nil {
		t.Errorf("an integer key: got %s, want an error", got)
	}
}
