package alisign

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
)

// FuzzSignForm: the signed text is the parameters sorted by name, whatever
// order they come in, and exactly as long as their names and values; a
// sign decodes only as the hex of one MAC of the method's size.
func FuzzSignForm(f *testing.F) {
	// Reference §5.3's Go sample and §3's HTTPS registration.
	f.Add("clientId", "2001", "deviceName", "2001", "timestamp", "1528018257135", "hmacsha1", "edabfd45469dec12cf3432dd6083c58dadffb4ca")
	f.Add("deviceName", "dev1", "productKey", "a1TESTPK001", "random", "8Ygb7ULYh53B6OA", "hmacsha256",
		"1D7772FF22CC93AC220B4289323476655315B27CC92C9072527BA39FE40763D6")
	f.Add("a", "", "a", "b", "", "", "HmacMD5", "0")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, n3, v3, method, sign string) {
		forward := Content(Param{n1, v1}, Param{n2, v2}, Param{n3, v3})
		backward := Content(Param{n3, v3}, Param{n2, v2}, Param{n1, v1})
		if len(forward) != len(n1+v1+n2+v2+n3+v3) {
			t.Fatalf("Content is %d bytes for %d of parameters", len(forward), len(n1+v1+n2+v2+n3+v3))
		}
		if n1 != n2 && n2 != n3 && n1 != n3 && !bytes.Equal(forward, backward) {
			t.Fatalf("Content depends on the order: %q vs %q", forward, backward)
		}
		h, ok := Method(method)
		if !ok {
			h = sha1.New
		}
		mac, ok := Decode(sign, h)
		if ok != (mac != nil) {
			t.Fatalf("Decode(%q) = %x, %v", sign, mac, ok)
		}
		if ok && (len(mac) != h().Size() || hex.EncodeToString(mac) != strings.ToLower(sign)) {
			t.Fatalf("Decode(%q) = %x", sign, mac)
		}
	})
}
