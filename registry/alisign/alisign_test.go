package alisign

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"hash"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

func TestContent(t *testing.T) {
	tests := []struct {
		name   string
		params []Param
		want   string
	}{
		{"none", nil, ""},
		{"sorted by name whatever the order",
			[]Param{{"timestamp", "789"}, {"productKey", "pk"}, {"clientId", "12345"}, {"deviceName", "device"}},
			"clientId12345deviceNamedeviceproductKeypktimestamp789"},
		// C SDK 4's assigned-clientid mode signs the empty value (§2).
		{"empty value kept", []Param{{"productKey", "pk"}, {"deviceName", "dn"}, {"clientId", ""}},
			"clientIddeviceNamednproductKeypk"},
		// Names compare as bytes: upper case sorts first.
		{"ASCII order", []Param{{"random", "r"}, {"Zeta", "z"}, {"alpha", "a"}}, "Zetazalphaarandomr"},
		// C SDK 3 puts the whole CONNECT client id, pipes included, in a
		// sub-device login (§5.3).
		{"values are not escaped", []Param{{"deviceName", "d"}, {"clientId", "pk.d|_v=sdk-c-3.0.1|"}},
			"clientIdpk.d|_v=sdk-c-3.0.1|deviceNamed"},
	}
	for _, tt := range tests {
		if got := string(Content(tt.params...)); got != tt.want {
			t.Errorf("%s: Content = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// The reference's vectors (alibaba-iot.md §1.6, §3, §5.3), each checked
// through the registry's constant-time match as the callers do.
func TestVectors(t *testing.T) {
	device := func(pk, dn, cid, ts string) []Param {
		return []Param{{"timestamp", ts}, {"productKey", pk}, {"clientId", cid}, {"deviceName", dn}}
	}
	docTCP := device("pk", "device", "12345", "789")
	tests := []struct {
		name, method, secret string
		params               []Param // nil: the §3 registration
		content, sign        string
	}{
		{"§1.6 DOC-TCP sha1", "hmacsha1", "secret", docTCP,
			"clientId12345deviceNamedeviceproductKeypktimestamp789", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"},
		{"§1.6 DOC-TCP md5", "hmacmd5", "secret", docTCP,
			"clientId12345deviceNamedeviceproductKeypktimestamp789", "14b198324fe55e1d3c88f2e705e201ee"},
		{"§1.6 DOC-TCP sha256", "hmacsha256", "secret", docTCP,
			"clientId12345deviceNamedeviceproductKeypktimestamp789",
			"6074a46a91b1ebb2cc4ea42790ad0e80202c9843859fc292e57c4eb19fad9e57"},
		{"§1.6 community article", "hmacsha1", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq",
			device("a14Xib5kdYd", "light1983432", "SN1928339", "1539421321846"),
			"clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846",
			"b2488041f64f425016b467ee1c94959ebd592ad1"},
		{"§1.6 C SDK style", "hmacsha256", "devSecret0123456789",
			device("a1TESTPK001", "dev1", "a1TESTPK001.dev1", "2524608000000"),
			"clientIda1TESTPK001.dev1deviceNamedev1productKeya1TESTPK001timestamp2524608000000",
			"309BD43DD5AB5D636630A1A03590179DF319F86988E0842368498B1614CD99CC"},
		{"§5.3 sub-device login sample", "hmacsha1", "470c8262d6cee4bf440cf66758c2f3b8",
			device("a1Hhs4E2xUG", "2001", "2001", "1528018257135"),
			"clientId2001deviceName2001productKeya1Hhs4E2xUGtimestamp1528018257135",
			"edabfd45469dec12cf3432dd6083c58dadffb4ca"},
		{"§3 HTTPS registration", "hmacsha256", "prodSecretABC", nil,
			"deviceNamedev1productKeya1TESTPK001random8Ygb7ULYh53B6OA",
			"1D7772FF22CC93AC220B4289323476655315B27CC92C9072527BA39FE40763D6"},
	}
	for _, tt := range tests {
		h, ok := Method(tt.method)
		if !ok {
			t.Fatalf("%s: method %s unknown", tt.name, tt.method)
		}
		product := tt.params == nil // keyed by the ProductSecret
		var proof registry.HMACProof
		if product {
			proof = RegistrationProof(h, "a1TESTPK001", "dev1", "8Ygb7ULYh53B6OA")
		} else {
			proof = Proof(h, slices.Clone(tt.params)...)
		}
		if string(proof.Data) != tt.content || !proof.SecretIsKey {
			t.Errorf("%s: proof over %q (secret is key: %v), want %q", tt.name, proof.Data, proof.SecretIsKey, tt.content)
		}
		for _, sign := range []string{strings.ToLower(tt.sign), strings.ToUpper(tt.sign)} {
			mac, ok := Decode(sign, h)
			if !ok {
				t.Fatalf("%s: %s does not decode", tt.name, sign)
			}
			if got := match(product, tt.secret, proof, mac); !got {
				t.Errorf("%s: the reference's sign does not verify", tt.name)
			}
			if match(product, tt.secret+"x", proof, mac) {
				t.Errorf("%s: the sign verifies against another secret", tt.name)
			}
		}
	}
}

func match(product bool, secret string, proof registry.HMACProof, mac []byte) bool {
	if product {
		p := registry.Product{ProductSecret: secret}
		return p.MatchProductSecret(proof, mac)
	}
	d := registry.Device{Auth: registry.AuthInfo{Secret: secret}}
	_, ok := d.MatchSecret(proof, mac)
	return ok
}

func TestMethod(t *testing.T) {
	tests := []struct {
		name string
		want int // digest size; 0: refused
	}{
		{"hmacmd5", md5.Size}, {"HmacMD5", md5.Size}, {"hmacMd5", md5.Size},
		{"hmacsha1", sha1.Size}, {"hmacSha1", sha1.Size},
		{"hmacsha256", sha256.Size}, {"HMACSHA256", sha256.Size}, {"hmacSha256", sha256.Size},
		{DefaultMethod, md5.Size},
		// Listed in documents, used by no SDK, undefined: refused.
		{"sha256", 0}, {"Sha256", 0},
		{"", 0}, {"hmacsha512", 0}, {"md5", 0}, {"hmac-sha1", 0},
	}
	for _, tt := range tests {
		h, ok := Method(tt.name)
		switch {
		case ok != (tt.want != 0):
			t.Errorf("Method(%q) ok = %v", tt.name, ok)
		case ok && h().Size() != tt.want:
			t.Errorf("Method(%q) has size %d, want %d", tt.name, h().Size(), tt.want)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		sign string
		h    func() hash.Hash
		want []byte
	}{
		{"00ff" + strings.Repeat("ab", 14), md5.New, append([]byte{0, 0xff}, bytes.Repeat([]byte{0xab}, 14)...)},
		{"00FF" + strings.Repeat("AB", 14), md5.New, append([]byte{0, 0xff}, bytes.Repeat([]byte{0xab}, 14)...)},
		{strings.Repeat("aB", 20), sha1.New, bytes.Repeat([]byte{0xab}, 20)},
		{strings.Repeat("ab", 16), sha1.New, nil},   // an MD5's length for SHA-1
		{strings.Repeat("ab", 33), sha256.New, nil}, // too long
		{"abcd", sha1.New, nil},
		{strings.Repeat("zz", 20), sha1.New, nil}, // not hex
		{strings.Repeat("a", 39), sha1.New, nil},  // odd length
		{"", md5.New, nil},
	}
	for _, tt := range tests {
		got, ok := Decode(tt.sign, tt.h)
		if ok != (tt.want != nil) || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%q) = %x, %v; want %x", tt.sign, got, ok, tt.want)
		}
	}
}
