package api

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/iotgate/iotgate/registry/guard"
)

func TestBanList(t *testing.T) {
	s, _ := newTestServer(t)
	g := guard.NewLocal(guard.Defaults())
	s.bans = g
	s.banRoutes(s.echo.Group("/v5/iot/:project_id", s.authenticate))

	// An automatic ban appears in the list.
	for range guard.Defaults().IdentityFailures.Max {
		g.AuthFailed("dev_auto", netip.MustParseAddr("192.0.2.1"))
	}
	st, out := call(s, "tok1", "GET", "/v5/iot/p1/banned", "")
	list, _ := out["banned"].([]any)
	if st != 200 || len(list) != 1 {
		t.Fatalf("list: %d %v", st, out)
	}
	auto := list[0].(map[string]any)
	if auto["type"] != "identity" || auto["value"] != "dev_auto" || auto["source"] != "auto" ||
		auto["reason"] != guard.ReasonIdentityFailures || auto["create_time"] == "" || auto["expire_time"] == "" {
		t.Fatalf("automatic ban: %v", auto)
	}

	adds := []struct {
		body   string
		status int
		code   string
	}{
		{`{"type":"address","value":"10.1.2.3/8","reason":"scanner","duration":3600}`, 201, ""},
		{`{"type":"address","value":"2001:db8::1"}`, 201, ""},
		{`{"type":"identity","value":"dev_manual","reason":"stolen"}`, 201, ""},
		{`{"type":"address","value":"10.1.2.300"}`, 400, codeInvalidInput},
		{`{"type":"host","value":"x"}`, 400, codeInvalidInput},
		{`{"type":"identity"}`, 400, codeInvalidInput},
		{`{"type":"identity","value":"d","duration":0}`, 400, codeInvalidInput},
		{`{"type":`, 400, codeBadFormat},
	}
	for _, a := range adds {
		st, out := call(s, "tok1", "POST", "/v5/iot/p1/banned", a.body)
		if st != a.status || (a.code != "" && out["error_code"] != a.code) {
			t.Errorf("POST %s: %d %v, want %d %s", a.body, st, out, a.status, a.code)
		}
		if st == 201 && out["source"] != "manual" {
			t.Errorf("POST %s: %v", a.body, out)
		}
	}
	if !g.AddressBanned(netip.MustParseAddr("10.200.0.1")) || !g.IdentityBanned("dev_manual") {
		t.Fatal("manual bans not in force")
	}
	_, out = call(s, "tok1", "GET", "/v5/iot/p1/banned?type=address&limit=1", "")
	if list := out["banned"].([]any); len(list) != 1 || out["page"].(map[string]any)["count"] != 2.0 {
		t.Fatalf("addresses, limit 1: %v", out)
	}
	_, out = call(s, "tok1", "GET", "/v5/iot/p1/banned?source=manual", "")
	if n := len(out["banned"].([]any)); n != 3 {
		t.Fatalf("%d manual bans listed, want 3: %v", n, out)
	}
	if st, out := call(s, "tok1", "GET", "/v5/iot/p1/banned?limit=51", ""); st != 400 || out["error_code"] != codeLimitRange {
		t.Fatalf("limit 51: %d %v", st, out)
	}

	deletes := []struct {
		query  string
		status int
		code   string
	}{
		{"type=identity&value=dev_auto", 204, ""},
		{"type=identity&value=dev_auto", 404, codeBanNotFound},
		{"type=address&value=10.0.0.0/8", 204, ""},
		{"type=address&value=2001:db8::1", 204, ""},
		{"type=address", 400, codeInvalidInput},
	}
	for _, d := range deletes {
		st, out := call(s, "tok1", "DELETE", "/v5/iot/p1/banned?"+d.query, "")
		if st != d.status || (d.code != "" && out["error_code"] != d.code) {
			t.Errorf("DELETE %s: %d %v, want %d %s", d.query, st, out, d.status, d.code)
		}
	}
	if g.IdentityBanned("dev_auto") || g.AddressBanned(netip.MustParseAddr("10.200.0.1")) {
		t.Fatal("deleted bans still in force")
	}
	// The routes are authenticated like the rest of the API.
	if st, _ := call(s, "tok2", "GET", "/v5/iot/p1/banned", ""); st != 403 {
		t.Fatalf("another project's token: %d", st)
	}
}

// The REST API enforces address bans before authentication, and its
// failed authentications count against the address (never against the
// access key or token claimed): past the limit the address is banned,
// its requests with a valid token are refused too, and other addresses
// are served.
func TestRESTAuthFailuresBanTheAddress(t *testing.T) {
	s, _ := newTestServer(t)
	cfg := guard.Defaults()
	cfg.AddressFailures.Max = 5
	g := guard.NewLocal(cfg)
	s.bans = g
	from := func(addr, token string) int {
		req := httptest.NewRequest("GET", "/v5/iot/p1/products", nil)
		req.RemoteAddr = addr + ":40000"
		if token != "" {
			req.Header.Set("X-Auth-Token", token)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Code
	}
	if st := from("198.51.100.7", "tok1"); st != 200 {
		t.Fatalf("before: %d", st)
	}
	for i := range cfg.AddressFailures.Max {
		if st := from("198.51.100.7", "wrong-token"); st != 403 {
			t.Fatalf("wrong token %d: %d", i, st)
		}
	}
	if !g.AddressBanned(netip.MustParseAddr("198.51.100.7")) {
		t.Fatal("failed authentications did not ban the address")
	}
	if st := from("198.51.100.7", "tok1"); st != 403 {
		t.Fatalf("a banned address with a valid token: %d, want 403", st)
	}
	if st := from("198.51.100.8", "tok1"); st != 200 {
		t.Fatalf("another address: %d", st)
	}
	if g.IdentityBanned("wrong-token") || g.IdentityBanned("") {
		t.Fatal("a claimed credential was banned")
	}
}
