package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// signSDK signs req per reference §1.6 (SDK-HMAC-SHA256), written from
// the documented rules rather than from our verifier's code.
func signSDK(req *http.Request, body []byte, ak, sk string, now time.Time) {
	date := now.UTC().Format("20060102T150405Z")
	req.Header.Set("X-Sdk-Date", date)
	var segs []string
	for _, s := range strings.Split(req.URL.Path, "/") {
		segs = append(segs, strings.ReplaceAll(url.PathEscape(s), "+", "%2B"))
	}
	uri := strings.Join(segs, "/")
	if !strings.HasSuffix(uri, "/") {
		uri += "/"
	}
	q := req.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var qs []string
	for _, k := range keys {
		vals := q[k]
		sort.Strings(vals)
		for _, v := range vals {
			qs = append(qs, url.QueryEscape(k)+"="+strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
		}
	}
	headers := map[string]string{"host": req.URL.Host, "x-sdk-date": date, "x-project-id": req.Header.Get("X-Project-Id")}
	names := []string{"host", "x-project-id", "x-sdk-date"}
	var canonHeaders string
	for _, n := range names {
		canonHeaders += n + ":" + headers[n] + "\n"
	}
	sum := sha256.Sum256(body)
	canonical := strings.Join([]string{req.Method, uri, strings.Join(qs, "&"), canonHeaders, strings.Join(names, ";"), hex.EncodeToString(sum[:])}, "\n")
	h := sha256.Sum256([]byte(canonical))
	sts := "SDK-HMAC-SHA256\n" + date + "\n" + hex.EncodeToString(h[:])
	mac := hmac.New(sha256.New, []byte(sk))
	mac.Write([]byte(sts))
	req.Header.Set("Authorization", "SDK-HMAC-SHA256 Access="+ak+", SignedHeaders="+strings.Join(names, ";")+", Signature="+hex.EncodeToString(mac.Sum(nil)))
}

// TestIndependentSigner sends raw HTTP requests signed by signSDK: a POST
// with a body, a GET with a query, and tampered or stale variants.
func TestIndependentSigner(t *testing.T) {
	g := StartGate(t, GateOptions{})
	send := func(method, path, body string, mutate func(*http.Request, *time.Time)) (int, map[string]any) {
		req, _ := http.NewRequest(method, g.API+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Project-Id", g.Project)
		now := time.Now()
		if mutate != nil {
			mutate(nil, &now)
		}
		signSDK(req, []byte(body), g.AK, g.SK, now)
		if mutate != nil {
			mutate(req, nil)
		}
		resp, err := g.HTTP().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}
	prod := `{"product_id":"signed","name":"Signed","device_type":"x","protocol_type":"MQTT","service_capabilities":[]}`
	if st, out := send("POST", g.P("/products"), prod, nil); st != 201 {
		t.Fatalf("signed POST: %d %v", st, out)
	}
	if st, out := send("GET", g.P("/products?limit=5&offset=0"), "", nil); st != 200 || out["page"].(map[string]any)["count"].(float64) != 1 {
		t.Fatalf("signed GET with query: %d %v", st, out)
	}
	for name, mutate := range map[string]func(*http.Request, *time.Time){
		"tampered body": func(r *http.Request, _ *time.Time) {
			if r != nil {
				r.Body = io.NopCloser(strings.NewReader(strings.Replace(prod, "signed", "signex", 1)))
			}
		},
		"tampered query": func(r *http.Request, _ *time.Time) {
			if r != nil {
				r.URL.RawQuery = "limit=6&offset=0"
			}
		},
		"stale date": func(_ *http.Request, now *time.Time) {
			if now != nil {
				*now = now.Add(-16 * time.Minute)
			}
		},
		"wrong project header": func(r *http.Request, _ *time.Time) {
			if r != nil {
				r.Header.Set("X-Project-Id", "proj2")
			}
		},
	} {
		method, path, body := "POST", g.P("/products"), prod
		if strings.Contains(name, "query") {
			method, path, body = "GET", g.P("/products?limit=5&offset=0"), ""
		}
		if st, out := send(method, path, body, mutate); st != 401 || out["error_code"] != "IOTDA.000002" {
			t.Errorf("%s: want 401 IOTDA.000002, got %d %v", name, st, out)
		}
	}
}
