package api

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/alisign"
)

func register(s *Server, form url.Values) map[string]any {
	req := httptest.NewRequest("POST", "/auth/register/device", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return out
}

// TestDynamicRegistrationHTTPS follows reference §3 with its test vector:
// pk a1TESTPK001, dn dev1, product secret prodSecretABC, random
// 8Ygb7ULYh53B6OA, hmacsha256 → 1D7772FF….
func TestDynamicRegistrationHTTPS(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "a1TESTPK001", Name: "Ali", DeviceType: "x",
		ProtocolType: "MQTT", ProductSecret: "prodSecretABC"}); err != nil {
		t.Fatal(err)
	}
	d, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p1", ProductID: "a1TESTPK001", NodeID: "dev1"})
	if err != nil {
		t.Fatal(err)
	}
	good := url.Values{"productKey": {"a1TESTPK001"}, "deviceName": {"dev1"}, "random": {"8Ygb7ULYh53B6OA"},
		"sign": {"1D7772FF22CC93AC220B4289323476655315B27CC92C9072527BA39FE40763D6"}, "signMethod": {"hmacsha256"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	// Switch off: 6288 (after a good sign); bad inputs get their codes.
	for _, tc := range []struct {
		name string
		form url.Values
		code float64
	}{
		{"switch off", good, 6288},
		{"missing random", with("random", ""), 460},
		{"bad method", with("signMethod", "sha512"), 6292},
		{"unknown product", with("productKey", "nope"), 6250},
		{"wrong sign", with("sign", strings.Repeat("0", 64)), 6600},
		{"sign not hex", with("sign", "zz"), 6600},
	} {
		if out := register(s, tc.form); out["code"] != tc.code {
			t.Errorf("%s: got %v, want code %v", tc.name, out, tc.code)
		}
	}
	on := true
	if _, err := reg.UpdateProduct(ctx, "p1", "a1TESTPK001", registry.ProductUpdate{DynamicRegistration: &on}); err != nil {
		t.Fatal(err)
	}
	if out := register(s, with("deviceName", "ghost")); out["code"] != float64(6600) {
		t.Fatalf("sign over another device name must fail first: %v", out)
	}
	// Lower-case hex and mixed-case method are accepted.
	out := register(s, with("sign", strings.ToLower(good.Get("sign"))))
	data, _ := out["data"].(map[string]any)
	if out["code"] != float64(200) || out["message"] != "success" || data["deviceSecret"] != d.Auth.Secret || data["productKey"] != "a1TESTPK001" {
		t.Fatalf("registration: %v", out)
	}
	// The secret goes to one physical device only.
	if out := register(s, good); out["code"] != float64(6289) || out["message"] != "device is already active" {
		t.Fatalf("second registration: %v", out)
	}
	// ResetThing reopens it; the secret is the same.
	st, _ := call(s, "tok1", "POST", "/v5/iot/p1/devices/"+d.DeviceID+"/action?action_id=resetThing", "")
	if st != 200 {
		t.Fatalf("resetThing: %d", st)
	}
	out = register(s, with("signMethod", "HmacSHA256"))
	if data, _ := out["data"].(map[string]any); out["code"] != float64(200) || data["deviceSecret"] != d.Auth.Secret {
		t.Fatalf("after resetThing: %v", out)
	}
	// A device that has connected counts as active without ever registering.
	d2, _ := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p1", ProductID: "a1TESTPK001", NodeID: "dev2"})
	if _, err := reg.Connected(ctx, d2.DeviceID); err != nil {
		t.Fatal(err)
	}
	f := url.Values{"productKey": {"a1TESTPK001"}, "deviceName": {"dev2"}, "random": {"r"}, "signMethod": {"hmacmd5"}}
	f.Set("sign", hmacHex("md5", "prodSecretABC", "deviceNamedev2productKeya1TESTPK001randomr"))
	if out := register(s, f); out["code"] != float64(6289) {
		t.Fatalf("active device registered: %v", out)
	}
}

func hmacHex(alg, key, msg string) string {
	h, _ := alisign.Method("hmac" + alg)
	m := hmac.New(h, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}
