package regions

import (
	"errors"
	"net/url"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

// The vectors are the reference's §1.6 (DOC-TCP and the C SDK's form):
// the pre-auth sign is computed as the MQTT direct-connect password.
func TestPreAuthProof(t *testing.T) {
	doc := &registry.Device{Auth: registry.AuthInfo{Secret: "secret"}}
	c3 := &registry.Device{Auth: registry.AuthInfo{Secret: "devSecret0123456789"}}
	docForm := url.Values{"productKey": {"pk"}, "deviceName": {"device"}, "clientId": {"12345"}, "timestamp": {"789"}}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name string
		d    *registry.Device
		form url.Values
		ok   bool
	}{
		{"hmacsha1 doc vector", doc, with(docForm, "signmethod", "hmacsha1", "sign", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"), true},
		{"hmacsha1 upper hex", doc, with(docForm, "signmethod", "hmacsha1", "sign", "FAFD82A3D602B37FB0FA8B7892F24A477F851A14"), true},
		{"hmacmd5 by default", doc, with(docForm, "sign", "14b198324fe55e1d3c88f2e705e201ee"), true},
		{"hmacsha256", doc, with(docForm, "signmethod", "hmacsha256", "sign", "6074a46a91b1ebb2cc4ea42790ad0e80202c9843859fc292e57c4eb19fad9e57"), true},
		{"C SDK 3.0.1 form", c3, url.Values{"productKey": {"a1TESTPK001"}, "deviceName": {"dev1"}, "signmethod": {"hmacsha256"},
			"sign": {"309BD43DD5AB5D636630A1A03590179DF319F86988E0842368498B1614CD99CC"}, "version": {"default"},
			"clientId": {"a1TESTPK001.dev1"}, "timestamp": {"2524608000000"}, "resources": {"mqtt"}}, true},
		{"wrong secret", c3, with(docForm, "signmethod", "hmacsha1", "sign", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"), false},
		{"timestamp not signed", doc, with(docForm, "timestamp", "790", "signmethod", "hmacsha1", "sign", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"), false},
	}
	for _, tt := range tests {
		p, err := ParsePreAuth(tt.form)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		proof, mac, err := p.Proof()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if _, ok := tt.d.MatchSecret(proof, mac); ok != tt.ok {
			t.Errorf("%s: match = %v, want %v", tt.name, ok, tt.ok)
		}
	}
}

func TestParsePreAuthRefuses(t *testing.T) {
	base := url.Values{"productKey": {"pk"}, "deviceName": {"dn"}, "sign": {"14b198324fe55e1d3c88f2e705e201ee"}}
	tests := []struct {
		name  string
		set   [2]string
		param string
	}{
		{"no productKey", [2]string{"productKey", ""}, "productKey"},
		{"no deviceName", [2]string{"deviceName", ""}, "deviceName"},
		{"no sign", [2]string{"sign", ""}, "sign"},
		{"unknown method", [2]string{"signmethod", "sha512"}, "signmethod"},
		{"long timestamp", [2]string{"timestamp", "123456789012345678901"}, "timestamp"},
	}
	for _, tt := range tests {
		f := url.Values{}
		for k, v := range base {
			f[k] = v
		}
		f.Set(tt.set[0], tt.set[1])
		_, err := ParsePreAuth(f)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != tt.param {
			t.Errorf("%s: err = %v, want a ParamError on %s", tt.name, err, tt.param)
		}
	}
	p, _ := ParsePreAuth(url.Values{"productKey": {"pk"}, "deviceName": {"dn"}, "sign": {"zz"}})
	var pe *ParamError
	if _, _, err := p.Proof(); !errors.As(err, &pe) || pe.Param != "sign" {
		t.Errorf("non-hex sign: %v", err)
	}
}
