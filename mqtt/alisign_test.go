package mqtt

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// aliSign computes an Alibaba sign independently of registry/alisign:
// lower-case hex HMAC keyed by secret over content. TestMQTTAliSignHelper
// pins it to the reference's vectors.
func aliSign(method, secret, content string) string {
	h := map[string]func() hash.Hash{"hmacmd5": md5.New, "hmacsha1": sha1.New, "hmacsha256": sha256.New}[method]
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(content))
	return hex.EncodeToString(m.Sum(nil))
}

// Reference §1.6 and §3 (the registration sign, also MQTT's §4.1); the
// server's own rule is tested with the same vectors in registry/alisign.
func TestMQTTAliSignHelper(t *testing.T) {
	tests := []struct{ method, secret, content, want string }{
		{"hmacsha1", "secret", "clientId12345deviceNamedeviceproductKeypktimestamp789", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"},
		{"hmacmd5", "secret", "clientId12345deviceNamedeviceproductKeypktimestamp789", "14b198324fe55e1d3c88f2e705e201ee"},
		{"hmacsha256", "secret", "clientId12345deviceNamedeviceproductKeypktimestamp789",
			"6074a46a91b1ebb2cc4ea42790ad0e80202c9843859fc292e57c4eb19fad9e57"},
		{"hmacsha256", "prodSecretABC", "deviceNamedev1productKeya1TESTPK001random8Ygb7ULYh53B6OA",
			"1d7772ff22cc93ac220b4289323476655315b27cc92c9072527ba39fe40763d6"},
	}
	for _, tt := range tests {
		if s := aliSign(tt.method, tt.secret, tt.content); s != tt.want {
			t.Errorf("%s sign = %s, want %s", tt.method, s, tt.want)
		}
	}
}

// readSign's refusals: an unknown method rejects the identifier, a
// password that is not a sign of the method's size is a bad credential.
func TestMQTTReadSign(t *testing.T) {
	tests := []struct {
		method, password string
		refused          bool
		code             connackCode
		size             int
	}{
		{"", "14b198324fe55e1d3c88f2e705e201ee", false, connackCode{}, md5.Size},
		{"HmacSHA1", "FAFD82A3D602B37FB0FA8B7892F24A477F851A14", false, connackCode{}, sha1.Size},
		{"hmacsha512", "00", true, identifierRejected, 0},
		{"hmacsha1", "14b198324fe55e1d3c88f2e705e201ee", true, badCredentials, 0},
		{"hmacmd5", strings.Repeat("zz", 16), true, badCredentials, 0},
	}
	for _, tt := range tests {
		h, mac, r := readSign(tt.method, []byte(tt.password))
		switch {
		case !tt.refused && r != nil:
			t.Errorf("readSign(%q, %q) refused: %s", tt.method, tt.password, r.reason)
		case !tt.refused && (h().Size() != tt.size || len(mac) != tt.size):
			t.Errorf("readSign(%q, %q): hash size %d, mac %x", tt.method, tt.password, h().Size(), mac)
		case tt.refused && (r == nil || r.code != tt.code):
			t.Errorf("readSign(%q, %q) = %+v, want %+v", tt.method, tt.password, r, tt.code)
		}
	}
}

func TestMQTTParseAliClientID(t *testing.T) {
	tests := []struct {
		in   string
		want aliClientID
		ok   bool
	}{
		{"12345|securemode=3,signmethod=hmacsha1,timestamp=789|",
			aliClientID{ClientID: "12345", SecureMode: "3", SignMethod: "hmacsha1", Timestamp: "789", HasTimestamp: true}, true},
		// C SDK 3: extra keys, any order.
		{"pk.dn|timestamp=2524608000000,_v=sdk-c-3.0.1,securemode=2,signmethod=hmacsha256,lan=C,gw=0,ext=0|",
			aliClientID{ClientID: "pk.dn", SecureMode: "2", SignMethod: "hmacsha256", Timestamp: "2524608000000", HasTimestamp: true}, true},
		// C SDK 4: trailing comma (an empty item), empty clientId.
		{"|timestamp=2524608000000,_ss=1,securemode=2,signmethod=hmacsha256,ext=3,|",
			aliClientID{SecureMode: "2", SignMethod: "hmacsha256", Timestamp: "2524608000000", HasTimestamp: true}, true},
		// Node SDK.
		{"pk&dn|securemode=3,signmethod=hmacsha1,timestamp=1700000000000,lan=NodeJS,_v=1.2.8|",
			aliClientID{ClientID: "pk&dn", SecureMode: "3", SignMethod: "hmacsha1", Timestamp: "1700000000000", HasTimestamp: true}, true},
		// Registration and token connects; keys in any case.
		{"dn.pk|random=abc,authType=register,securemode=2,signmethod=hmacsha256|",
			aliClientID{ClientID: "dn.pk", SecureMode: "2", SignMethod: "hmacsha256", AuthType: "register", Random: "abc"}, true},
		{"cid|AUTHTYPE=connwl,SecureMode=-2,_ss=1,ext=3,_v=sdk-c-4.x|",
			aliClientID{ClientID: "cid", SecureMode: "-2", AuthType: "connwl"}, true},
		{"x|securemode=3|", aliClientID{ClientID: "x", SecureMode: "3"}, true},
		{"x||", aliClientID{ClientID: "x"}, true},
		{"x|securemode=3", aliClientID{}, false},               // no closing pipe
		{"x|securemode=3|tail", aliClientID{}, false},          // text after the last pipe
		{"x|securemode|", aliClientID{}, false},                // not key=value
		{"x|securemode=3,securemode=2|", aliClientID{}, false}, // twice
		{"x|signmethod=hmacsha1,SIGNMETHOD=hmacmd5|", aliClientID{}, false},
		{"no-pipes", aliClientID{}, false},
		{strings.Repeat("c", 129) + "|securemode=3|", aliClientID{}, false},
		{"x|" + strings.Repeat("a=b,", 64) + "|", aliClientID{}, false},
	}
	for _, tt := range tests {
		got, err := parseAliClientID(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("parseAliClientID(%q): %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && got != tt.want {
			t.Errorf("parseAliClientID(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	// Dispatch by shape.
	for _, tt := range []struct {
		cid, user string
		ali       bool
	}{
		{"dev_1_0_0_2025041401", "dev_1", false},
		{"x|securemode=3|", "dn&pk", true},
		{"malformed", "dn&pk", true},
		{"x|", "dev_1", true},
	} {
		if got := isAlibaba(tt.cid, []byte(tt.user)); got != tt.ali {
			t.Errorf("isAlibaba(%q, %q) = %v", tt.cid, tt.user, got)
		}
	}
	for _, tt := range []struct {
		in     string
		dn, pk string
		ok     bool
	}{
		{"device&pk", "device", "pk", true},
		{"device", "", "", false},
		{"&pk", "", "", false},
		{"device&", "", "", false},
	} {
		dn, pk, ok := parseAliUsername([]byte(tt.in))
		if ok != tt.ok || ok && (dn != tt.dn || pk != tt.pk) {
			t.Errorf("parseAliUsername(%q) = %q %q %v", tt.in, dn, pk, ok)
		}
	}
}

// fakeAuthRegistry serves one device, for the DOC-TCP vectors whose
// 6-character secret the real registry would not accept.
type fakeAuthRegistry struct {
	authRegistry // unused methods panic
	dev          *registry.Device
}

func (f fakeAuthRegistry) DeviceByProductNode(_ context.Context, pk, dn string) (*registry.Device, error) {
	if pk == f.dev.ProductID && dn == f.dev.NodeID {
		d := *f.dev
		return &d, nil
	}
	return nil, &registry.NotFoundError{Kind: registry.EntityDevice, ID: pk + "/" + dn}
}

func (f fakeAuthRegistry) ProductByID(_ context.Context, id string) (*registry.Product, error) {
	if id != f.dev.ProductID {
		return nil, errors.New("unexpected product lookup")
	}
	return &registry.Product{ProductID: id, NodeType: registry.NodeEndpoint}, nil
}

// The DOC-TCP vectors (reference §1.6) through the server's CONNECT check,
// in each sign method and hex case.
func TestMQTTAliConnectDocVectors(t *testing.T) {
	h := &authHook{reg: fakeAuthRegistry{dev: &registry.Device{DeviceID: "pk_device", ProjectID: "p", ProductID: "pk",
		NodeID: "device", Auth: registry.AuthInfo{Type: registry.AuthSecret, Secret: "secret"}}},
		stats: &counters{}}
	cl := &mochi.Client{} // no connection: plain TCP
	connect := func(clientID, password string) packets.Packet {
		return packets.Packet{Connect: packets.ConnectParams{ClientIdentifier: clientID, Keepalive: 60,
			Username: []byte("device&pk"), Password: []byte(password)}}
	}
	for method, password := range map[string]string{
		"hmacsha1":   "FAFD82A3D602B37FB0FA8B7892F24A477F851A14",
		"hmacmd5":    "14b198324fe55e1d3c88f2e705e201ee",
		"hmacsha256": "6074a46a91b1ebb2cc4ea42790ad0e80202c9843859fc292e57c4eb19fad9e57",
	} {
		c, r := h.authenticateAlibaba(context.Background(), cl, connect("12345|securemode=3,signmethod="+method+",timestamp=789|", password))
		if r != nil {
			t.Fatalf("%s: refused: %s", method, r.reason)
		}
		if c.device != "pk_device" || c.self != (owner{"pk", "device"}) || c.gateway {
			t.Fatalf("%s: conn %+v", method, c)
		}
	}
	// hmacmd5 is the default; the timestamp is signed only when sent.
	if _, r := h.authenticateAlibaba(context.Background(), cl, connect("12345|securemode=3,timestamp=789|",
		"14b198324fe55e1d3c88f2e705e201ee")); r != nil {
		t.Fatalf("default method: %s", r.reason)
	}
	noTS := aliSign("hmacsha1", "secret", "clientId12345deviceNamedeviceproductKeypk")
	if _, r := h.authenticateAlibaba(context.Background(), cl, connect("12345|securemode=3,signmethod=hmacsha1|", noTS)); r != nil {
		t.Fatalf("no timestamp: %s", r.reason)
	}
	// An empty clientId: signed with or without it (C SDK 4).
	for _, content := range []string{"clientIddeviceNamedeviceproductKeypktimestamp1", "deviceNamedeviceproductKeypktimestamp1"} {
		if _, r := h.authenticateAlibaba(context.Background(), cl, connect("|securemode=3,signmethod=hmacsha1,timestamp=1|",
			aliSign("hmacsha1", "secret", content))); r != nil {
			t.Fatalf("empty clientId, content %s: %s", content, r.reason)
		}
	}
	// Changing any signed value breaks the sign.
	for _, cid := range []string{"12346|securemode=3,signmethod=hmacsha1,timestamp=789|",
		"12345|securemode=3,signmethod=hmacsha1,timestamp=788|", "12345|securemode=3,signmethod=hmacsha1|"} {
		_, r := h.authenticateAlibaba(context.Background(), cl, connect(cid, "fafd82a3d602b37fb0fa8b7892f24a477f851a14"))
		if r == nil || r.code != notAuthorized {
			t.Fatalf("%s: %+v, want not authorized", cid, r)
		}
	}
}
