package format

import (
	"errors"
	"testing"
)

// Fuzz targets: every decoder must return either records or an error that
// wraps one of the package sentinels, never panic; and whatever decodes
// must re-encode in the same format and decode back to the same records.
// The base path is fuzzed too, picked from fuzzBases by index.

func fuzzBases() []Path {
	return []Path{
		NewPath(), NewPath(3), NewPath(3, 0), NewPath(3, 0, 6), NewPath(3, 0, 6, 1),
		NewPath(3, 0, 0), NewPath(3, 0, 13), NewPath(1, 0), NewPath(0, 0), NewPath(5, 0, 0),
		NewPath(19, 0, 0), NewPath(testObject), NewPath(testObject, 0),
		NewPath(testObject, 0, 1), NewPath(testObject, 0, 3), NewPath(testObject, 0, 4),
		NewPath(testObject, 0, 5), NewPath(testObject, 0, 6), NewPath(testObject, 0, 7),
		NewPath(testObject, 0, 8), NewPath(testObject, 0, 12), NewPath(42, 0, 0),
	}
}

func baseIndex(tb testing.TB, p string) uint8 {
	tb.Helper()
	for i, b := range fuzzBases() {
		if b.String() == p {
			return uint8(i)
		}
	}
	tb.Fatalf("no fuzz base %s", p)
	return 0
}

func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrMalformed, ErrUnsupportedFormat, ErrInvalidPath, ErrKindMismatch} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error without sentinel: %v", err)
}

// fuzzDecode decodes, then checks the re-encode/re-decode round trip.
func fuzzDecode(t *testing.T, cf uint16, baseIdx uint8, payload []byte) {
	bases := fuzzBases()
	base := bases[int(baseIdx)%len(bases)]
	recs, err := Decode(cf, base, payload, testModel())
	if err != nil {
		checkSentinel(t, err)
		return
	}
	enc, err := Encode(cf, base, recs)
	if err != nil {
		t.Fatalf("base %s: decoded records do not re-encode: %v%s", base, err, fmtRecords(recs))
	}
	back, err := Decode(cf, base, enc, testModel())
	if err != nil {
		t.Fatalf("base %s: re-encoded payload %q does not decode: %v", base, enc, err)
	}
	checkRecords(t, "base "+base.String()+" re-decode", back, recs)
}

func FuzzDecodeTLV(f *testing.F) {
	seeds := []struct {
		base    string
		payload []byte
	}{
		{"/3/0", unhex(f, deviceTLV)},
		{"/3", unhex(f, "08 00 79"+deviceTLV)},
		{"/3/0/6", unhex(f, "86 06 41 00 01 41 01 05")},
		{"/3/0/6", unhex(f, "41 00 01 41 01 05")},
		{"/3/0/6/1", unhex(f, "41 01 05")},
		{"/3/0", unhex(f, "03 00 C1 09 64")},
		{"/3", unhex(f, "00 01 20 01 00 00")},
		{"/3/0", unhex(f, "80 06 D8 63 00 00 01 00")},
		{"/9999/0", unhex(f, "C4 04 3F C0 00 00 C8 04 08 3F B9 99 99 99 99 99 9A C1 05 01 C4 08 00 42 01 02 C1 03 FF")},
	}
	for _, s := range seeds {
		f.Add(baseIndex(f, s.base), s.payload)
	}
	if b, err := Encode(FormatTLV, NewPath(testObject), allKinds()); err == nil {
		f.Add(baseIndex(f, "/9999"), b)
	}
	f.Fuzz(func(t *testing.T, baseIdx uint8, payload []byte) {
		fuzzDecode(t, FormatTLV, baseIdx, payload)
	})
}

func FuzzDecodeSenMLJSON(f *testing.F) {
	f.Add(baseIndex(f, "/3/0"), []byte(deviceSenMLJSON))
	f.Add(baseIndex(f, "/"), []byte(`[{"bn":"/3303/0/5700","bt":1.276020076001e+09,"v":22.4,"t":-5},{"v":22.9,"t":-30}]`))
	f.Add(baseIndex(f, "/"), []byte(`[{"n":"/3/0/0"},{"n":"/3/0/9"},{"n":"/1/0"}]`))
	f.Add(baseIndex(f, "/"), []byte(`[{"n":"/3/0/13","v":1.599E9},{"n":"/1/0/17","v":3},{"bn":"/1/0/","n":"1","v":300.0}]`))
	f.Add(baseIndex(f, "/9999/0"), []byte(`[{"bn":"/9999/0/","n":"1","vs":"a"},{"n":"5","vb":false},{"n":"6","vd":"AAEC_w"},{"n":"8","vlo":"1:2"},{"n":"3","v":18446744073709551615}]`))
	f.Add(baseIndex(f, "/"), []byte(rfc8428MultiJSON))
	if b, err := Encode(FormatSenMLJSON, NewPath(testObject, 0), allKinds()); err == nil {
		f.Add(baseIndex(f, "/9999/0"), b)
	}
	f.Fuzz(func(t *testing.T, baseIdx uint8, payload []byte) {
		fuzzDecode(t, FormatSenMLJSON, baseIdx, payload)
	})
}

func FuzzDecodeSenMLCBOR(f *testing.F) {
	f.Add(baseIndex(f, "/"), unhex(f, rfc8428MultiCBOR))
	f.Add(baseIndex(f, "/3/0"), unhex(f, `82 a3 21 65 2f 33 2f 30 2f 00 61 30 03 74 4f 70 65 6e 20 4d 6f 62 69 6c 65 20 41 6c 6c 69 61 6e 63 65 a2 00 61 39 02 18 64`))
	f.Add(baseIndex(f, "/"), unhex(f, `9f bf 00 7f 62 2f 33 62 2f 30 62 2f 39 ff 02 f9 3c 00 18 63 82 01 a1 01 02 61 78 f6 ff ff`))
	f.Add(baseIndex(f, "/"), unhex(f, `83 a2 00 69 2f 39 39 39 39 2f 30 2f 38 63 76 6c 6f 63 33 3a 30 a2 00 69 2f 39 39 39 39 2f 30 2f 36 08 44 00 01 02 ff a2 00 69 2f 39 39 39 39 2f 30 2f 35 04 f5`))
	for _, base := range []Path{NewPath(3, 0), NewPath()} {
		if b, err := Encode(FormatSenMLCBOR, base, deviceRecords()); err == nil {
			f.Add(baseIndex(f, base.String()), b)
		}
	}
	if b, err := Encode(FormatSenMLCBOR, NewPath(testObject, 0), allKinds()); err == nil {
		f.Add(baseIndex(f, "/9999/0"), b)
	}
	f.Fuzz(func(t *testing.T, baseIdx uint8, payload []byte) {
		fuzzDecode(t, FormatSenMLCBOR, baseIdx, payload)
	})
}

func FuzzDecodeLwM2MJSON(f *testing.F) {
	f.Add(baseIndex(f, "/3/0"), []byte(deviceLwM2MJSON))
	f.Add(baseIndex(f, "/1/0"), []byte(`{"e":[{"n":"1","v":300},{"n":"6","bv":true},{"n":"10","ov":"11:0"},{"n":"/1/0/7","sv":"U"}],"x":1}`))
	f.Add(baseIndex(f, "/0/0"), []byte(`{"bn":"/0/0/","e":[{"n":"3","sv":"AQID"},{"n":"0","sv":"coaps://x"}]}`))
	f.Add(baseIndex(f, "/"), []byte(`{"bn":"/3303/0/5700","bt":25462634,"e":[{"v":22.4,"t":-5},{"v":22.9,"t":-30},{"v":24.1}]}`))
	if b, err := Encode(FormatLwM2MJSON, NewPath(testObject, 0), allKinds()); err == nil {
		f.Add(baseIndex(f, "/9999/0"), b)
	}
	f.Fuzz(func(t *testing.T, baseIdx uint8, payload []byte) {
		fuzzDecode(t, FormatLwM2MJSON, baseIdx, payload)
	})
}

func FuzzDecodeText(f *testing.F) {
	for _, s := range []struct{ base, payload string }{
		{"/3/0/0", "Open Mobile Alliance"},
		{"/3/0/6/1", "5"},
		{"/3/0/13", "1367491215"},
		{"/1/0", "1"},
		{"/0/0", "AQID"},
		{"/9999/0/3", "18446744073709551615"},
		{"/9999/0/4", "-12.5e-3"},
		{"/9999/0/5", "1"},
		{"/9999/0/6", "//4="},
		{"/9999/0/7", "-5"},
		{"/9999/0/8", "3:65535"},
		{"/42/0/0", "\xff"},
	} {
		f.Add(baseIndex(f, s.base), []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, baseIdx uint8, payload []byte) {
		fuzzDecode(t, FormatText, baseIdx, payload)
	})
}

func FuzzParseLinks(f *testing.F) {
	for _, s := range []string{
		`</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</19/0>;ver=1.0`,
		`</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/2>;obs,</3/0/7>;dim=2`,
		" </1/0> ,\r\n\t</3/0> ; ver = \"1.1\" ,\n</5/0>\n",
		`</a>;title="x, y; z";if="a\"b\\c";rt="",</b>`,
		`<coap://[2001:db8::1]:5683/rd?ep=a,b>;ct=40`,
		`</1/0>;rt="oma`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		links, err := ParseLinks(payload)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		out := FormatLinks(links)
		back, err := ParseLinks(out)
		if err != nil {
			t.Fatalf("formatted links %q do not parse: %v", out, err)
		}
		if !linksEqual(back, links) {
			t.Fatalf("round trip of %q via %q: got %+v, want %+v", payload, out, back, links)
		}
	})
}
