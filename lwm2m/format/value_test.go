package format

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"
)

func TestValueAccessors(t *testing.T) {
	if v := StringValue("s"); v.Kind() != KindString || v.Str() != "s" || v.Int() != 0 {
		t.Error("String")
	}
	if v := IntegerValue(-3); v.Int() != -3 || v.Uint() != 0 || v.Float() != 0 {
		t.Error("Integer")
	}
	if v := UnsignedValue(math.MaxUint64); v.Uint() != math.MaxUint64 || v.Int() != 0 {
		t.Error("Unsigned")
	}
	if v := FloatValue(-0.5); v.Float() != -0.5 {
		t.Error("Float")
	}
	if !BooleanValue(true).Bool() || BooleanValue(false).Bool() || IntegerValue(1).Bool() {
		t.Error("Boolean")
	}
	b := []byte{1, 2}
	v := OpaqueValue(b)
	b[0] = 9
	if got := v.Bytes(); got[0] != 1 || len(got) != 2 {
		t.Error("Opaque must copy")
	}
	v.Bytes()[0] = 7
	if v.Bytes()[0] != 1 {
		t.Error("Bytes must copy")
	}
	tm := time.Date(2013, 5, 2, 10, 40, 15, 999, time.UTC)
	if v := TimeValue(tm); !v.Time().Equal(tm.Truncate(time.Second)) || v.Int() != 1367491215 {
		t.Errorf("Time = %v", v.Time())
	}
	if o, i := ObjLinkValue(3, 65535).ObjLink(); o != 3 || i != 65535 {
		t.Error("ObjLink")
	}
	if (Value{}).Kind() != KindNone || (Value{}).String() != "<none>" {
		t.Error("zero Value")
	}
	if FloatValue(math.NaN()).String() != "NaN" || Kind(99).String() != "Kind(99)" {
		t.Error("String of odd values")
	}
	// Comparable by bits, so NaN equals itself.
	if FloatValue(math.NaN()) != FloatValue(math.NaN()) {
		t.Error("NaN values should compare equal")
	}
}

func TestValueJSON(t *testing.T) {
	tests := []struct {
		v    Value
		want string
		back Value // what UnmarshalJSON gives before As
	}{
		{StringValue("a<b"), `"a\u003cb"`, StringValue("a<b")},
		{IntegerValue(-5), `-5`, IntegerValue(-5)},
		{UnsignedValue(math.MaxUint64), `18446744073709551615`, UnsignedValue(math.MaxUint64)},
		{FloatValue(2), `2.0`, FloatValue(2)},
		{BooleanValue(false), `false`, BooleanValue(false)},
		{OpaqueValue([]byte{0xff}), `"/w=="`, StringValue("/w==")},
		{TimeValue(time.Unix(1367491215, 0)), `1367491215`, IntegerValue(1367491215)},
		{ObjLinkValue(3, 0), `"3:0"`, StringValue("3:0")},
		{Value{}, `null`, Value{}},
	}
	for _, tc := range tests {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%s) = %s, %v; want %s", tc.v.kind, b, err, tc.want)
			continue
		}
		var back Value
		if err := json.Unmarshal(b, &back); err != nil || back != tc.back {
			t.Errorf("Unmarshal(%s) = %#v, %v; want %#v", b, back, err, tc.back)
			continue
		}
		if tc.v.kind == KindNone {
			continue
		}
		if conv, err := back.As(tc.v.kind); err != nil || conv != tc.v {
			t.Errorf("As(%s) = %#v, %v", tc.v.kind, conv, err)
		}
	}
	if _, err := json.Marshal(FloatValue(math.Inf(1))); err == nil {
		t.Error("Marshal(+Inf) succeeded")
	}
	var v Value
	for _, bad := range []string{`[1]`, `{}`, `1e999`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}

func TestValueAs(t *testing.T) {
	tests := []struct {
		in   Value
		k    Kind
		want Value
		err  bool
	}{
		{IntegerValue(5), KindUnsigned, UnsignedValue(5), false},
		{IntegerValue(-5), KindUnsigned, Value{}, true},
		{IntegerValue(5), KindFloat, FloatValue(5), false},
		{IntegerValue(5), KindTime, TimeValue(time.Unix(5, 0)), false},
		{UnsignedValue(math.MaxUint64), KindInteger, Value{}, true},
		{UnsignedValue(7), KindInteger, IntegerValue(7), false},
		{FloatValue(7), KindInteger, IntegerValue(7), false},
		{FloatValue(7.5), KindInteger, Value{}, true},
		{FloatValue(math.NaN()), KindInteger, Value{}, true},
		{FloatValue(math.Inf(1)), KindUnsigned, Value{}, true},
		{FloatValue(9.223372036854775808e18), KindInteger, Value{}, true},
		{FloatValue(-9.223372036854775808e18), KindInteger, IntegerValue(math.MinInt64), false},
		{FloatValue(1.8446744073709552e19), KindUnsigned, Value{}, true},
		{FloatValue(-1), KindUnsigned, Value{}, true},
		{StringValue("1"), KindBoolean, BooleanValue(true), false},
		{StringValue("AQ=="), KindOpaque, OpaqueValue([]byte{1}), false},
		{StringValue("x"), KindInteger, Value{}, true},
		{BooleanValue(true), KindInteger, Value{}, true},
		{IntegerValue(1), KindString, Value{}, true},
		{StringValue("x"), KindNone, Value{}, true},
		{Value{}, KindString, Value{}, true},
	}
	for _, tc := range tests {
		got, err := tc.in.As(tc.k)
		if tc.err {
			if !errors.Is(err, ErrKindMismatch) {
				t.Errorf("%s %s As(%s): err = %v, want ErrKindMismatch", tc.in.kind, tc.in, tc.k, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %s As(%s) = %#v, %v; want %#v", tc.in.kind, tc.in, tc.k, got, err, tc.want)
		}
	}
}

func TestRecordJSON(t *testing.T) {
	r := timedRec("/3/0/13", TimeValue(time.Unix(1367491215, 0)), 1.5)
	b, err := json.Marshal([]Record{r, rec("/1/0/10", ObjLinkValue(11, 0))})
	want := `[{"path":"/3/0/13","value":1367491215,"time":1.5},{"path":"/1/0/10","value":"11:0"}]`
	if err != nil || string(b) != want {
		t.Errorf("got %s, %v\nwant %s", b, err, want)
	}
}
