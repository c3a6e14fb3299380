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

// aliSign computes an Alibaba sign independently of the server code:
// lower-case hex HMAC keyed by secret over content. TestMQTTAliSignVectors
// pins it to the reference's vectors.
func aliSign(method, secret, content string) string {
	h := map[string]func() hash.Hash{"hmacmd5": md5.New, "hmacsha1": sha1.New, "hmacsha256": sha256.New}[method]
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(content))
	return hex.EncodeToString(m.Sum(nil))
}

// Reference §1.6: the test helper and the server's content builder both
// agree with the published vectors.
func TestMQTTAliSignVectors(t *testing.T) {
	tests := []struct {
		method, secret, clientID, dn, pk, ts, content, want string
	}{
		{"hmacsha1", "secret", "12345", "device", "pk", "789",
			"clientId12345deviceNamedeviceproductKeypktimestamp789", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"},
		{"hmacmd5", "secret", "12345", "device", "pk", "789",
			"clientId12345deviceNamedeviceproductKeypktimestamp789", "14b198324fe55e1d3c88f2e705e201ee"},
		{"hmacsha256", "secret", "12345", "device", "pk", "789",
			"clientId12345deviceNamedeviceproductKeypktimestamp789", "6074a46a91b1ebb2cc4ea42790ad0e80202c9843859fc292e57c4eb19fad9e57"},
		{"hmacsha1", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq", "SN1928339", "light1983432", "a14Xib5kdYd", "1539421321846",
			"clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846", "b2488041f64f425016b467ee1c94959ebd592ad1"},
		{"hmacsha256", "devSecret0123456789", "a1TESTPK001.dev1", "dev1", "a1TESTPK001", "2524608000000",
			"clientIda1TESTPK001.dev1deviceNamedev1productKeya1TESTPK001timestamp2524608000000",
			"309bd43dd5ab5d636630a1a03590179df319f86988e0842368498b1614cd99cc"},
	}
	for _, tt := range tests {
		// The server sorts whatever order it is given.
		got := string(signContent(signParam{"timestamp", tt.ts}, signParam{"productKey", tt.pk},
			signParam{"clientId", tt.clientID}, signParam{"deviceName", tt.dn}))
		if got != tt.content {
			t.Errorf("signContent = %q, want %q", got, tt.content)
		}
		if s := aliSign(tt.method, tt.secret, tt.content); s != tt.want {
			t.Errorf("%s sign = %s, want %s", tt.method, s, tt.want)
		}
		h, ok := registry.SignMethod(strings.ToUpper(tt.method))
		if !ok {
			t.Fatalf("registry.SignMethod(%s) unknown", tt.method)
		}
		mac, ok := decodeSign(strings.ToUpper(tt.want), h)
		d := registry.Device{Auth: registry.AuthInfo{Secret: tt.secret}}
		if _, match := d.MatchSecret(signProof(h, []byte(tt.content)), mac); !ok || !match {
			t.Errorf("%s: the vector does not verify against the device secret", tt.method)
		}
	}
	// Reference §3 (also the MQTT registration sign, §4.1).
	if s := aliSign("hmacsha256", "prodSecretABC", string(signContent(signParam{"random", "8Ygb7ULYh53B6OA"},
		signParam{"productKey", "a1TESTPK001"}, signParam{"deviceName", "dev1"}))); s != strings.ToLower("1D7772FF22CC93AC220B4289323476655315B27CC92C9072527BA39FE40763D6") {
		t.Errorf("registration sign %s", s)
	}
}

func TestMQTTAliSignMethods(t *testing.T) {
	for _, m := range []string{"hmacmd5", "HmacMD5", "hmacSha1", "HMACSHA256", "hmacSha256"} {
		if _, ok := registry.SignMethod(m); !ok {
			t.Errorf("%s refused", m)
		}
	}
	for _, m := range []string{"", "sha256", "Sha256", "hmacsha512", "md5"} {
		if _, ok := registry.SignMethod(m); ok {
			t.Errorf("%s accepted", m)
		}
	}
	if _, ok := decodeSign("abcd", sha1.New); ok {
		t.Error("a short sign decoded")
	}
	if _, ok := decodeSign(strings.Repeat("zz", 20), sha1.New); ok {
		t.Error("a non-hex sign decoded")
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
	return nil, &registry.NotFoundError{Kind: "device", ID: pk + "/" + dn}
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
