package regions

import (
	"hash"
	"net/url"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/alisign"
)

// PreAuth is an Alibaba signed pre-auth (POST /auth/devicename, iotkit
// 2.x and 3.0 with securemode -1): the device proves it holds its secret
// with sign = HMAC(DeviceSecret, clientId{..}deviceName{..}productKey{..}
// timestamp{..}), clientId and timestamp only when sent, the same rule as
// the MQTT direct-connect password.
type PreAuth struct {
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
	ClientID   string `json:"clientId,omitempty"`
	// HasClientID and HasTimestamp: the field was sent (and is signed).
	HasClientID  bool   `json:"hasClientId,omitempty"`
	Timestamp    string `json:"timestamp,omitempty"`
	HasTimestamp bool   `json:"hasTimestamp,omitempty"`
	SignMethod   string `json:"signmethod,omitempty"`
	Sign         string `json:"sign"`
}

// Limits on pre-auth fields: Alibaba's (ProductKey 20, DeviceName 32 in
// the C SDK) widened to iotgate's product and node ids.
const (
	maxKeyLen    = 64
	maxClientLen = 128
	maxStampLen  = 20
)

// ParsePreAuth reads the form of POST /auth/devicename. Fields the
// platform does not use (version, resources) are ignored, as are unknown
// ones.
func ParsePreAuth(f url.Values) (PreAuth, error) {
	p := PreAuth{
		ProductKey: f.Get("productKey"),
		DeviceName: f.Get("deviceName"),
		SignMethod: f.Get("signmethod"),
		Sign:       f.Get("sign"),
	}
	p.ClientID, p.HasClientID = first(f, "clientId")
	p.Timestamp, p.HasTimestamp = first(f, "timestamp")
	return p, p.Validate()
}

func first(f url.Values, k string) (string, bool) {
	v, ok := f[k]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// Validate checks the fields' presence and sizes (not the sign).
func (p PreAuth) Validate() error {
	for _, f := range []struct {
		name, value string
		max         int
		required    bool
	}{
		{"productKey", p.ProductKey, maxKeyLen, true},
		{"deviceName", p.DeviceName, maxKeyLen, true},
		{"sign", p.Sign, 128, true},
		{"clientId", p.ClientID, maxClientLen, false},
		{"timestamp", p.Timestamp, maxStampLen, false},
		{"signmethod", p.SignMethod, 16, false},
	} {
		switch {
		case f.required && f.value == "":
			return &ParamError{Param: f.name, Reason: "missing"}
		case len(f.value) > f.max:
			return &ParamError{Param: f.name, Reason: "too long"}
		}
	}
	if _, ok := alisign.Method(p.method()); !ok {
		return &ParamError{Param: "signmethod", Reason: "not hmacmd5, hmacsha1 or hmacsha256"}
	}
	return nil
}

func (p PreAuth) method() string {
	if p.SignMethod == "" {
		return alisign.DefaultMethod
	}
	return p.SignMethod
}

// Proof returns what the sign must be over the device's secret, and the
// sign's bytes (hex in either case). A sign that is not hex of the
// method's size is a ParamError.
func (p PreAuth) Proof() (registry.HMACProof, []byte, error) {
	var h func() hash.Hash
	h, ok := alisign.Method(p.method())
	if !ok {
		return registry.HMACProof{}, nil, &ParamError{Param: "signmethod", Reason: "not hmacmd5, hmacsha1 or hmacsha256"}
	}
	mac, ok := alisign.Decode(p.Sign, h)
	if !ok {
		return registry.HMACProof{}, nil, &ParamError{Param: "sign", Reason: "not hex of the sign method's size"}
	}
	params := []alisign.Param{{Name: "deviceName", Value: p.DeviceName}, {Name: "productKey", Value: p.ProductKey}}
	if p.HasClientID {
		params = append(params, alisign.Param{Name: "clientId", Value: p.ClientID})
	}
	if p.HasTimestamp {
		params = append(params, alisign.Param{Name: "timestamp", Value: p.Timestamp})
	}
	return alisign.Proof(h, params...), mac, nil
}
