package aksk

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzParseAuthorization: an Authorization header parses to fields that,
// written back in the SDK's form, parse to the same fields, or fails with
// ErrMissing or ErrMalformed and a bounded message.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624",
		"V11-HMAC-SHA256 Credential=AccessKey/20060102/test-region-1/demo, SignedHeaders=x-sdk-date, Signature=8fd3610508884bb19718317797c7378716a94bc740d97502e569322e366341cc",
		"SDK-HMAC-SHA256 Access=AK, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature=" + strings.Repeat("0", 64),
		"SDK-HMAC-SHA256 Access=AK, Access=AK, SignedHeaders=a, Signature=00",
		"SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;;b, Signature=" + strings.Repeat("g", 64),
		"V11-HMAC-SHA256 Credential=AK/2006/r/s, SignedHeaders=a, Signature=" + strings.Repeat("f", 64),
		"Bearer eyJhbGciOi", "", "SDK-HMAC-SHA256", "SDK-HMAC-SHA256 ,,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		a, err := parseAuthorization(http.Header{"Authorization": {value}})
		if err != nil {
			if !errors.Is(err, ErrMissing) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("parseAuthorization(%q): error %v is neither ErrMissing nor ErrMalformed", value, err)
			}
			// quote keeps 64 bytes of client text, at most 4 characters
			// each once escaped: a message stays bounded, whatever was sent.
			if len(err.Error()) > 400 {
				t.Fatalf("parseAuthorization(%q): %d-byte error message", value, len(err.Error()))
			}
			return
		}
		if a.accessKey == "" || a.signedHeaders == "" || strings.Contains(a.signedHeaders, ";;") {
			t.Fatalf("parseAuthorization(%q) accepted %+v", value, a)
		}
		key := "Access=" + a.accessKey
		switch a.algorithm {
		case AlgorithmSDK:
		case AlgorithmV11:
			key = "Credential=" + a.accessKey + "/" + a.scope
		default:
			t.Fatalf("parseAuthorization(%q): algorithm %q", value, a.algorithm)
		}
		again, err := parseAuthorization(http.Header{"Authorization": {a.algorithm + " " + key +
			", SignedHeaders=" + a.signedHeaders + ", Signature=" + hex.EncodeToString(a.signature[:])}})
		if err != nil || again != a {
			t.Fatalf("parseAuthorization(%q) = %+v, which written back parses to %+v, %v", value, a, again, err)
		}
	})
}

// FuzzCanonicalQuery: the canonical query is a fixed point (canonicalising
// it again changes nothing), or the query is refused as ErrMalformed.
func FuzzCanonicalQuery(f *testing.F) {
	for _, s := range []string{
		"limit=1", "key=value", "limit=10&tag=zeta&tag=alpha&tag=Mid&tag=a%20b%26c%3Dd&marker&filter=name%3D%2A%28x%29%21",
		"a=1&&b", "=v", "%zz=1", "a+b=c+d", "k=%E4%BD%A0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := appendQuery(nil, raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || out != nil {
				t.Fatalf("appendQuery(%q) = %q, %v", raw, out, err)
			}
			return
		}
		again, err := appendQuery(nil, string(out))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("appendQuery(%q) = %q, which canonicalises to %q, %v", raw, out, again, err)
		}
	})
}

// FuzzVerifySigned: a request the independent test signer signs, sent
// through net/http, verifies; the same request with its body changed does
// not. The path, a query parameter, a signed header and the body are
// fuzzed.
func FuzzVerifySigned(f *testing.F) {
	f.Add("/v5/iot/proj-1/devices/my device:1/ü+ä/a%2Fb/commands", "tag", "a b&c=d", "  padded value  ", false,
		[]byte("{\"service_id\":\"svc\",\"command_name\":\"ON\",\"paras\":{\"level\":3}}\n"))
	f.Add("/path", "limit", "1", "TEST_VALUE", true, []byte{})
	f.Add("/v5/iot/p1/devices", "marker", "", "proj-1", false, []byte(`{"node_id":"n1","product_id":"p"}`))
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	v := &Verifier{Lookup: keys("AK1", "SK1"), Now: fixedNow(now)}
	f.Fuzz(func(t *testing.T, path, qk, qv, hv string, derived bool, body []byte) {
		if qk == "" || !strings.HasPrefix(path, "/") || strings.ContainsAny(hv, "\x00\r\n") {
			t.Skip("not something a client can send")
		}
		c := clientRequest{method: "POST", endpoint: "https://iot.example.com", path: path,
			query:   map[string][]string{qk: {qv}},
			headers: map[string]string{"Content-Type": "application/json", "X-Project-Id": hv},
			body:    string(body)}
		s := signer{ak: "AK1", sk: "SK1", date: now, derived: derived, region: "cn-north-4", service: "iotdm"}
		r, got, err := sendOverTheWire(c, s.sign(c))
		if err != nil {
			t.Skip(err)
		}
		if ak, err := v.Verify(r, got); err != nil || ak != "AK1" {
			t.Fatalf("signed %q?%s=%s X-Project-Id %q: Verify = %q, %v", path, qk, qv, hv, ak, err)
		}
		if ak, err := v.Verify(r, append(got, ' ')); !errors.Is(err, ErrSignature) || ak != "" {
			t.Fatalf("changed body: Verify = %q, %v; want ErrSignature", ak, err)
		}
	})
}

// sendOverTheWire is overTheWire for fuzzing: what net/http cannot carry
// is an error, not a test failure.
func sendOverTheWire(c clientRequest, headers map[string]string) (*http.Request, []byte, error) {
	req, err := http.NewRequest(c.method, c.endpoint, strings.NewReader(c.body))
	if err != nil {
		return nil, nil, err
	}
	req.URL.Path = c.path
	q := url.Values{}
	for k, vs := range c.query {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	req.URL.RawQuery = strings.ReplaceAll(strings.ReplaceAll(strings.Trim(q.Encode(), "="), "=&", "&"), "+", "%20")
	for k, v := range headers {
		req.Header.Add(k, v)
	}
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		return nil, nil, err
	}
	r, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(r.Body)
	return r, body, err
}
