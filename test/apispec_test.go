package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
)

// The REST traffic of the end-to-end tests is checked against the OpenAPI
// description the binary serves (GET /openapi.json): every request a test
// sends through a gate's client (Do, g.HTTP(), g.checked, and the Huawei
// SDK through g.sdkHTTPConfig) and the answer to it are validated with
// kin-openapi as they pass, and what does not match fails the test that
// started the gate, at its end. The check sits in the client's transport,
// not in the server: the binary under test runs no test-only code, and
// the requests are the very bytes the SDK and the tests put on the wire.
//
// A test may send a request the description refuses (a bad limit, a
// missing field, no credential) to see it refused: that is fine as long
// as the server refuses it too (4xx). So:
//   - an answer must match the operation's declared answer for its
//     status (statuses not declared fail);
//   - a request the description refuses must not be accepted (2xx), save
//     on an operation marked x-errors-in-body (Alibaba's registration,
//     whose every answer is an HTTP 200);
//   - a request to no operation must be answered 404 or 405 with the
//     error body.
//
// Not seen: raw connections (the slow-client attacks, which test the
// listener, not the API's shapes) and other processes (the Node.js
// Alibaba SDK, iotgate-fleet). The one binary started without a gate
// (TestStartsOnDefaults) is checked with a newAPICheck of its own.

// apiCheck validates the traffic to one gate. It is safe for concurrent
// use.
type apiCheck struct {
	doc    *openapi3.T
	router routers.Router
	client *http.Client

	mu       sync.Mutex
	checked  int
	failures []string
	dropped  int             // failures past maxReported
	seen     map[string]bool // "METHOD /path/{param}" of the operations exchanged with
}

// maxReported bounds the failures one gate reports (a broken shape
// repeats in every answer of a load test).
const maxReported = 20

// newAPICheck loads the description the API at base (http://host:port)
// serves and fails the test at its end with any mismatch recorded.
func newAPICheck(t testing.TB, base string) *apiCheck {
	t.Helper()
	resp, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %v", resp.StatusCode, err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatalf("load /openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("/openapi.json is not valid OpenAPI 3: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route /openapi.json: %v", err)
	}
	c := &apiCheck{doc: doc, router: router}
	c.client = &http.Client{Transport: c.wrap(http.DefaultTransport)}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Logf("%d REST exchanges matched /openapi.json", c.checked)
		for _, f := range c.failures {
			t.Errorf("REST traffic does not match /openapi.json: %s", f)
		}
		if c.dropped > 0 {
			t.Errorf("and %d more exchanges do not match /openapi.json", c.dropped)
		}
	})
	return c
}

// HTTP is a client whose traffic to g is checked against the description.
func (g *Gate) HTTP() *http.Client { return g.api.client }

// checked wraps a transport (nil: http.DefaultTransport) so that its
// traffic to g is checked.
func (g *Gate) checked(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return g.api.wrap(base)
}

// sdkHTTPConfig is the Huawei SDK's HTTP configuration with a checked
// transport; base carries the transport's own settings (TLS roots), nil
// for the defaults. (The SDK's HttpTransport option would take
// precedence over the round tripper: it must stay unset.)
func (g *Gate) sdkHTTPConfig(base *http.Transport) *config.HttpConfig {
	var rt http.RoundTripper = http.DefaultTransport
	if base != nil {
		rt = base
	}
	return config.DefaultHttpConfig().WithHttpRoundTripper(g.checked(rt))
}

func (c *apiCheck) wrap(base http.RoundTripper) http.RoundTripper {
	return &checkedTransport{check: c, base: base}
}

type checkedTransport struct {
	check *apiCheck
	base  http.RoundTripper
}

// RoundTrip sends req and checks it and its answer. Both bodies are read
// whole (the answer's before RoundTrip returns) and handed on unchanged.
func (t *checkedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	if err := t.check.exchange(req, body, resp, answer); err != nil {
		t.check.fail(fmt.Sprintf("%s %s -> %d: %v\n\trequest: %s\n\tanswer: %s", req.Method, req.URL.RequestURI(),
			resp.StatusCode, err, clip(body), clip(answer)))
	} else {
		t.check.mu.Lock()
		t.check.checked++
		t.check.mu.Unlock()
	}
	return resp, nil
}

func (c *apiCheck) fail(f string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) == maxReported {
		c.dropped++
		return
	}
	c.failures = append(c.failures, f)
}

// exchange checks one request and its answer against the description.
func (c *apiCheck) exchange(req *http.Request, body []byte, resp *http.Response, answer []byte) error {
	ctx := context.Background()
	// The validator reads the body it is given: a copy of the request.
	vreq := req.Clone(ctx)
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		if !errors.Is(err, routers.ErrPathNotFound) && !errors.Is(err, routers.ErrMethodNotAllowed) {
			return err
		}
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Errorf("no operation in the description, yet answered %d", resp.StatusCode)
		}
		return c.errorBody(answer)
	}
	c.mu.Lock()
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	c.seen[route.Method+" "+route.Path] = true
	c.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: validationOptions(false)}
	refused := openapi3filter.ValidateRequest(ctx, in)
	if refused != nil && resp.StatusCode < 400 && route.Operation.Extensions["x-errors-in-body"] != true {
		return fmt.Errorf("the server accepted a request the description refuses: %w", refused)
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(answer)),
		Options: validationOptions(true),
	})
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return nil
}

// errorBody checks an answer against the description's error body.
func (c *apiCheck) errorBody(answer []byte) error {
	var v any
	if err := json.Unmarshal(answer, &v); err != nil {
		return fmt.Errorf("error answer is not JSON: %w", err)
	}
	return c.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.SetSchemaErrorMessageCustomizer(schemaMismatch))
}

// validationOptions checks requests (with the credential stand-in) or
// answers (whose status must be declared), with short messages.
func validationOptions(answers bool) *openapi3filter.Options {
	o := &openapi3filter.Options{AuthenticationFunc: credentialPresent, MultiError: true, IncludeResponseStatus: answers}
	o.WithCustomSchemaErrorFunc(schemaMismatch)
	return o
}

// schemaMismatch names where a value breaks its schema and why, without
// kin-openapi's dump of the whole schema.
func schemaMismatch(err *openapi3.SchemaError) string {
	return "/" + strings.Join(err.JSONPointer(), "/") + ": " + err.Reason
}

// credentialPresent stands in for the server's authentication: the
// description says which headers carry a credential, the server decides
// whether it is good (and answers 401/403 when not, which the answer
// check then holds to the description).
func credentialPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type == "apiKey" && s.In == "header" && in.RequestValidationInput.Request.Header.Get(s.Name) != "" {
		return nil
	}
	return fmt.Errorf("no %s header", s.Name)
}

// clip shortens a body for a failure message.
func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "(empty)"
	}
	return s
}

// roundTripFunc is a transport made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAPICheckCatchesMismatches holds the check itself to account: fed
// answers the binary did not give (a stand-in transport answers
// instead), it must flag each kind of mismatch and pass what matches.
func TestAPICheckCatchesMismatches(t *testing.T) {
	g := StartGate(t, GateOptions{})
	product := `{"app_id":"proj1","app_name":"DefaultApp","product_id":"m","name":"M","device_type":"x",` +
		`"protocol_type":"MQTT","data_format":"json","create_time":"20261207T081500Z",` +
		`"dynamic_registration":false,"preregistration_free":false,"node_type":"ENDPOINT"}`
	notFound := `{"error_code":"IOTDA.000008","error_msg":"no such API"}`
	for _, tc := range []struct {
		name         string
		method, path string // path: under the project's, unless it starts with //
		form         string // a form body
		token        bool
		status       int
		answer       string
		mismatch     string // "" when the exchange matches
	}{
		{"a product", "GET", "/products/m", "", true, 200, product, ""},
		{"a field not described", "GET", "/products/m", "", true, 200,
			strings.Replace(product, `"name"`, `"colour":"red","name"`, 1), `"colour" is unsupported`},
		{"a required field missing", "GET", "/products/m", "", true, 200,
			strings.Replace(product, `"node_type":"ENDPOINT"`, `"industry":"x"`, 1), `"node_type"`},
		{"a time in the wrong format", "GET", "/products/m", "", true, 200,
			strings.Replace(product, "20261207T081500Z", "2026-12-07", 1), "/create_time"},
		{"a status not described", "GET", "/products/m", "", true, 202, product, "202"},
		{"an error body", "GET", "/products/m", "", true, 404, notFound, ""},
		{"an error body of another shape", "GET", "/products/m", "", true, 404, `{"message":"not found"}`, "error_code"},
		{"a refused request refused", "GET", "/products?limit=0", "", true, 400, notFound, ""},
		{"a refused request accepted", "GET", "/products?limit=0", "", true, 200,
			`{"products":[],"page":{"count":0}}`, "accepted a request the description refuses"},
		{"no credential, accepted", "GET", "/products/m", "", false, 200, product, "accepted a request"},
		{"no operation, 404", "GET", "/nowhere", "", true, 404, notFound, ""},
		{"no operation, answered", "GET", "/nowhere", "", true, 200, `{}`, "no operation"},
		{"no such method", "PATCH", "/products/m", "", true, 200, product, "no operation"},
		{"a 429 without Retry-After", "GET", "/products/m", "", true, 429,
			`{"error_code":"IOTDA.021101","error_msg":"Request reached the maximum rate limit."}`, "Retry-After"},
		{"a registration", "POST", "//auth/register/device", "productKey=p&deviceName=d&random=r&sign=s", false, 200,
			`{"code":200,"data":{"productKey":"p","deviceName":"d","deviceSecret":"s"},"message":"success"}`, ""},
		// Alibaba's registration answers every error in an HTTP 200.
		{"a refused registration", "POST", "//auth/register/device", "productKey=p", false, 200,
			`{"code":460,"message":"missing parameter deviceName"}`, ""},
		{"a registration answer of another shape", "POST", "//auth/register/device", "productKey=p", false, 200,
			`{"code":"460"}`, "/code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &apiCheck{doc: g.api.doc, router: g.api.router}
			client := &http.Client{Transport: c.wrap(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: tc.status, Header: http.Header{"Content-Type": {"application/json"}},
					Body: io.NopCloser(strings.NewReader(tc.answer)), Request: r}, nil
			}))}
			path := g.P(tc.path)
			if strings.HasPrefix(tc.path, "//") {
				path = tc.path[1:]
			}
			req, err := http.NewRequest(tc.method, g.API+path, strings.NewReader(tc.form))
			if err != nil {
				t.Fatal(err)
			}
			if tc.form != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.token {
				req.Header.Set("X-Auth-Token", g.Token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := io.ReadAll(resp.Body); string(got) != tc.answer {
				t.Fatalf("the answer was not handed on unchanged: %q", got)
			}
			switch {
			case tc.mismatch == "" && (len(c.failures) != 0 || c.checked != 1):
				t.Fatalf("flagged a matching exchange: %v", c.failures)
			case tc.mismatch != "" && (len(c.failures) != 1 || !strings.Contains(c.failures[0], tc.mismatch)):
				t.Fatalf("want one failure naming %q, got %q", tc.mismatch, c.failures)
			case tc.mismatch != "":
				t.Logf("flagged: %s", c.failures[0])
			}
		})
	}
}
