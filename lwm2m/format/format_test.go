package format

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// testObject is a made-up object whose resource r has Kind(r) for r in 1..8
// and, used as multiple resources, Kind(r-10) for r in 11..18.
const testObject = 9999

func testModel() Model {
	return ModelFunc(func(o, r int32) (Kind, bool) {
		if o == testObject {
			switch {
			case r >= 1 && r <= 8:
				return Kind(r), true
			case r >= 11 && r <= 18:
				return Kind(r - 10), true
			}
			return KindNone, false
		}
		return DefaultModel().Kind(o, r)
	})
}

func mustPath(t testing.TB, s string) Path {
	t.Helper()
	p, err := ParsePath(s)
	if err != nil {
		t.Fatalf("ParsePath(%q): %v", s, err)
	}
	return p
}

// unhex decodes hex with any whitespace in it.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

func rec(path string, v Value) Record {
	p, err := ParsePath(path)
	if err != nil {
		panic(err)
	}
	return Record{Path: p, Value: v}
}

func timedRec(path string, v Value, t float64) Record {
	r := rec(path, v)
	r.Time = t
	return r
}

func fmtRecords(rs []Record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "\n\t%s %s %q", r.Path, r.Value.kind, r.Value.String())
		if r.Time != 0 {
			fmt.Fprintf(&b, " t=%v", r.Time)
		}
	}
	return b.String()
}

func checkRecords(t testing.TB, what string, got, want []Record) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:%s\nwant:%s", what, fmtRecords(got), fmtRecords(want))
	}
}

// allKinds is one single-instance resource of every kind plus a multiple
// resource of every kind, under /9999/0.
func allKinds() []Record {
	vals := []Value{
		StringValue("héllo \"wörld\"\n\t\\ <&>"),
		IntegerValue(-123456789012),
		UnsignedValue(math.MaxUint64),
		FloatValue(3.25),
		BooleanValue(true),
		OpaqueValue([]byte{0, 1, 2, 0xfe, 0xff}),
		TimeValue(time.Unix(1700000000, 0)),
		ObjLinkValue(3, 0),
	}
	more := []Value{
		StringValue(""),
		IntegerValue(math.MinInt64),
		UnsignedValue(0),
		FloatValue(-1e-300),
		BooleanValue(false),
		OpaqueValue(nil),
		TimeValue(time.Unix(-5, 0)),
		ObjLinkValue(65535, 65535),
	}
	var rs []Record
	for i, v := range vals {
		rs = append(rs, rec(fmt.Sprintf("/9999/0/%d", i+1), v))
	}
	for i := range vals {
		rs = append(rs,
			rec(fmt.Sprintf("/9999/0/%d/0", i+11), vals[i]),
			rec(fmt.Sprintf("/9999/0/%d/7", i+11), more[i]))
	}
	return rs
}

func TestRoundTripAllFormats(t *testing.T) {
	recs := allKinds()
	timed := make([]Record, len(recs))
	for i, r := range recs {
		r.Time = 1700000000 + float64(i)/4
		timed[i] = r
	}
	composite := []Record{
		rec("/3/0/0", Value{}),
		rec("/1/0", Value{}),
		rec("/9999/0/4", FloatValue(2)),
	}
	tests := []struct {
		name   string
		format uint16
		base   string
		recs   []Record
	}{
		{"tlv instance", FormatTLV, "/9999/0", recs},
		{"tlv object", FormatTLV, "/9999", recs},
		{"tlv legacy number", FormatTLVLegacy, "/9999/0", recs},
		{"tlv multiple resource", FormatTLV, "/9999/0/12", recs[10:12]},
		{"tlv resource instance", FormatTLV, "/9999/0/12/0", recs[10:11]},
		{"tlv single resource", FormatTLV, "/9999/0/1", recs[:1]},
		{"tlv empty instance and resource", FormatTLV, "/9999", []Record{rec("/9999/1", Value{}), rec("/9999/2/12", Value{})}},
		{"senml json", FormatSenMLJSON, "/9999/0", recs},
		{"senml json root", FormatSenMLJSON, "/", recs},
		{"senml json timed", FormatSenMLJSON, "/9999/0", timed},
		{"senml json composite", FormatSenMLJSON, "/", composite},
		{"senml json record at base", FormatSenMLJSON, "/9999/0/12", []Record{rec("/9999/0/12", Value{}), rec("/9999/0/12/1", IntegerValue(4))}},
		{"senml cbor", FormatSenMLCBOR, "/9999/0", recs},
		{"senml cbor root", FormatSenMLCBOR, "/", recs},
		{"senml cbor timed", FormatSenMLCBOR, "/9999/0", timed},
		{"senml cbor composite", FormatSenMLCBOR, "/", composite},
		{"lwm2m json", FormatLwM2MJSON, "/9999/0", recs},
		{"lwm2m json root", FormatLwM2MJSON, "/", recs},
		{"lwm2m json timed", FormatLwM2MJSONLegacy, "/9999/0", timed},
		{"lwm2m json record at base", FormatLwM2MJSON, "/9999/0/1", recs[:1]},
	}
	for i := range 8 {
		r := recs[i]
		tests = append(tests, struct {
			name   string
			format uint16
			base   string
			recs   []Record
		}{"text " + r.Value.kind.String(), FormatText, r.Path.String(), []Record{r}})
	}
	tests = append(tests, struct {
		name   string
		format uint16
		base   string
		recs   []Record
	}{"opaque", FormatOpaque, "/9999/0/6", recs[5:6]})

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := mustPath(t, tc.base)
			b, err := Encode(tc.format, base, tc.recs)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(tc.format, base, b, testModel())
			if err != nil {
				t.Fatalf("Decode(%q): %v", b, err)
			}
			checkRecords(t, "round trip", got, tc.recs)
		})
	}
}

func TestEncodeKindMismatch(t *testing.T) {
	tests := []struct {
		name   string
		format uint16
		base   string
		recs   []Record
		want   error
	}{
		{"text none", FormatText, "/3/0/0", []Record{rec("/3/0/0", Value{})}, ErrKindMismatch},
		{"text two records", FormatText, "/3/0/0", []Record{rec("/3/0/0", StringValue("a")), rec("/3/0/0", StringValue("b"))}, ErrKindMismatch},
		{"text NaN", FormatText, "/9999/0/4", []Record{rec("/9999/0/4", FloatValue(math.NaN()))}, ErrKindMismatch},
		{"text bad utf8", FormatText, "/3/0/0", []Record{rec("/3/0/0", StringValue("\xff"))}, ErrKindMismatch},
		{"text object path", FormatText, "/3/0", []Record{rec("/3/0", StringValue("a"))}, ErrInvalidPath},
		{"text other path", FormatText, "/3/0/0", []Record{rec("/3/0/0/1", StringValue("a"))}, ErrInvalidPath},
		{"opaque string", FormatOpaque, "/3/0/0", []Record{rec("/3/0/0", StringValue("a"))}, ErrKindMismatch},
		{"tlv none resource instance", FormatTLV, "/3/0", []Record{rec("/3/0/6/0", Value{})}, ErrKindMismatch},
		{"tlv instance value", FormatTLV, "/3", []Record{rec("/3/0", IntegerValue(1))}, ErrKindMismatch},
		{"tlv root", FormatTLV, "/", []Record{rec("/3/0/0", StringValue("a"))}, ErrInvalidPath},
		{"tlv single and multiple", FormatTLV, "/3/0", []Record{rec("/3/0/6", IntegerValue(1)), rec("/3/0/6/0", IntegerValue(1))}, ErrInvalidPath},
		{"tlv duplicate", FormatTLV, "/3/0", []Record{rec("/3/0/6", IntegerValue(1)), rec("/3/0/6", IntegerValue(1))}, ErrInvalidPath},
		{"tlv duplicate instance", FormatTLV, "/3/0", []Record{rec("/3/0/6/1", IntegerValue(1)), rec("/3/0/6/1", IntegerValue(1))}, ErrInvalidPath},
		{"tlv bad utf8", FormatTLV, "/3/0", []Record{rec("/3/0/0", StringValue("\xc3"))}, ErrKindMismatch},
		{"tlv object record", FormatTLV, "/3", []Record{rec("/3", Value{})}, ErrInvalidPath},
		{"tlv too large", FormatTLV, "/3/0", []Record{rec("/3/0/0", OpaqueValue(make([]byte, 1<<24)))}, ErrKindMismatch},
		{"not under base", FormatSenMLJSON, "/3/0", []Record{rec("/3/1/0", StringValue("a"))}, ErrInvalidPath},
		{"invalid path", FormatSenMLJSON, "/", []Record{{Path: Path{3, -1, 0, -1}}}, ErrInvalidPath},
		{"senml json NaN", FormatSenMLJSON, "/", []Record{rec("/3/0/0", FloatValue(math.Inf(1)))}, ErrKindMismatch},
		{"senml json bad utf8", FormatSenMLJSON, "/", []Record{rec("/3/0/0", StringValue("a\xffb"))}, ErrKindMismatch},
		{"senml json NaN time", FormatSenMLJSON, "/", []Record{timedRec("/3/0/9", IntegerValue(1), math.NaN())}, ErrKindMismatch},
		{"senml cbor bad utf8", FormatSenMLCBOR, "/", []Record{rec("/3/0/0", StringValue("a\xffb"))}, ErrKindMismatch},
		{"senml cbor NaN time", FormatSenMLCBOR, "/", []Record{timedRec("/3/0/9", IntegerValue(1), math.Inf(-1))}, ErrKindMismatch},
		{"lwm2m json none", FormatLwM2MJSON, "/", []Record{rec("/3/0/0", Value{})}, ErrKindMismatch},
		{"lwm2m json NaN", FormatLwM2MJSON, "/", []Record{rec("/3/0/0", FloatValue(math.NaN()))}, ErrKindMismatch},
		{"link format", FormatLinkFormat, "/", nil, ErrUnsupportedFormat},
		{"unknown format", 60, "/", nil, ErrUnsupportedFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(tc.format, mustPath(t, tc.base), tc.recs)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Encode error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeUnsupported(t *testing.T) {
	for _, cf := range []uint16{FormatLinkFormat, 60, 11544, 65535} {
		if _, err := Decode(cf, NewPath(3), []byte("x"), nil); !errors.Is(err, ErrUnsupportedFormat) {
			t.Errorf("Decode(%d) error = %v, want ErrUnsupportedFormat", cf, err)
		}
	}
	if _, err := Decode(FormatText, Path{1, -1, 2, -1}, []byte("x"), nil); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("Decode with invalid base: %v", err)
	}
}

// The same Device object instance in every multi-value format decodes to
// the same records.
func TestDeviceAcrossFormats(t *testing.T) {
	want := deviceRecords()
	base := NewPath(3, 0)
	for _, tc := range []struct {
		format  uint16
		payload []byte
	}{
		{FormatTLV, unhex(t, deviceTLV)},
		{FormatSenMLJSON, []byte(deviceSenMLJSON)},
		{FormatLwM2MJSON, []byte(deviceLwM2MJSON)},
	} {
		got, err := Decode(tc.format, base, tc.payload, DefaultModel())
		if err != nil {
			t.Fatalf("format %d: %v", tc.format, err)
		}
		checkRecords(t, fmt.Sprintf("format %d", tc.format), got, want)
		// And the CBOR form of it round-trips.
		b, err := Encode(FormatSenMLCBOR, base, got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(FormatSenMLCBOR, base, b, DefaultModel())
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "cbor", back, want)
	}
}
