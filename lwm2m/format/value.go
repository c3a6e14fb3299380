package format

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is the LwM2M data type of a resource value.
type Kind uint8

// The LwM2M resource data types (TS Core 1.1 Appendix C). KindNone marks a
// Record that names a node without a value.
const (
	KindNone Kind = iota
	KindString
	KindInteger
	KindUnsigned
	KindFloat
	KindBoolean
	KindOpaque
	KindTime
	KindObjLink
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindNone:
		return "None"
	case KindString:
		return "String"
	case KindInteger:
		return "Integer"
	case KindUnsigned:
		return "Unsigned"
	case KindFloat:
		return "Float"
	case KindBoolean:
		return "Boolean"
	case KindOpaque:
		return "Opaque"
	case KindTime:
		return "Time"
	case KindObjLink:
		return "ObjLink"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

func (k Kind) numeric() bool {
	return k == KindInteger || k == KindUnsigned || k == KindFloat || k == KindTime
}

// Value is one typed LwM2M value. The zero Value has KindNone.
//
// Values are immutable and comparable with ==: numbers are kept as raw bits
// (so NaN payloads compare by bits) and strings and opaque bytes as a Go
// string. Accessors for another kind return the zero value of their type.
type Value struct {
	kind Kind
	bits uint64 // Integer, Time: int64; Unsigned; Float: IEEE 754 bits; Boolean: 0/1; ObjLink: obj<<16|inst
	str  string // String; Opaque bytes
}

// StringValue returns a String value; s should be valid UTF-8, which
// encoders check.
func StringValue(s string) Value { return Value{kind: KindString, str: s} }

// IntegerValue returns a signed Integer value.
func IntegerValue(i int64) Value { return Value{kind: KindInteger, bits: uint64(i)} }

// UnsignedValue returns an Unsigned Integer value (LwM2M 1.1).
func UnsignedValue(u uint64) Value { return Value{kind: KindUnsigned, bits: u} }

// FloatValue returns a Float value.
func FloatValue(f float64) Value { return Value{kind: KindFloat, bits: math.Float64bits(f)} }

// BooleanValue returns a Boolean value.
func BooleanValue(b bool) Value {
	v := Value{kind: KindBoolean}
	if b {
		v.bits = 1
	}
	return v
}

// OpaqueValue returns an Opaque value holding a copy of b.
func OpaqueValue(b []byte) Value { return Value{kind: KindOpaque, str: string(b)} }

// TimeValue returns a Time value; LwM2M time has whole-second resolution, so
// t is truncated to its Unix seconds.
func TimeValue(t time.Time) Value { return Value{kind: KindTime, bits: uint64(t.Unix())} }

// ObjLinkValue returns an Object Link value "object:instance".
func ObjLinkValue(object, instance uint16) Value {
	return Value{kind: KindObjLink, bits: uint64(object)<<16 | uint64(instance)}
}

// Kind returns the value's kind.
func (v Value) Kind() Kind { return v.kind }

// Str returns the text of a String value.
func (v Value) Str() string {
	if v.kind != KindString {
		return ""
	}
	return v.str
}

// Int returns an Integer value, or the Unix seconds of a Time value.
func (v Value) Int() int64 {
	if v.kind != KindInteger && v.kind != KindTime {
		return 0
	}
	return int64(v.bits)
}

// Uint returns an Unsigned value.
func (v Value) Uint() uint64 {
	if v.kind != KindUnsigned {
		return 0
	}
	return v.bits
}

// Float returns a Float value.
func (v Value) Float() float64 {
	if v.kind != KindFloat {
		return 0
	}
	return math.Float64frombits(v.bits)
}

// Bool returns a Boolean value.
func (v Value) Bool() bool { return v.kind == KindBoolean && v.bits == 1 }

// Bytes returns a copy of an Opaque value's bytes.
func (v Value) Bytes() []byte {
	if v.kind != KindOpaque {
		return nil
	}
	return []byte(v.str)
}

// Time returns a Time value as UTC time.
func (v Value) Time() time.Time {
	if v.kind != KindTime {
		return time.Time{}
	}
	return time.Unix(int64(v.bits), 0).UTC()
}

// ObjLink returns the object and instance ids of an Object Link value.
func (v Value) ObjLink() (object, instance uint16) {
	if v.kind != KindObjLink {
		return 0, 0
	}
	return uint16(v.bits >> 16), uint16(v.bits)
}

// String returns the LwM2M plain-text form of the value (opaque as base64,
// booleans as 0/1, time as Unix seconds), or "<none>" for KindNone.
func (v Value) String() string {
	switch v.kind {
	case KindNone:
		return "<none>"
	case KindFloat:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	s, err := v.text()
	if err != nil {
		return fmt.Sprintf("<%s: %v>", v.kind, err)
	}
	return s
}

// text returns the LwM2M plain-text representation (TS 1.0 §6.4.1).
func (v Value) text() (string, error) {
	switch v.kind {
	case KindString:
		return v.str, nil
	case KindInteger, KindTime:
		return strconv.FormatInt(int64(v.bits), 10), nil
	case KindUnsigned:
		return strconv.FormatUint(v.bits, 10), nil
	case KindFloat:
		return formatFloat(v.Float())
	case KindBoolean:
		return strconv.FormatUint(v.bits, 10), nil
	case KindOpaque:
		return base64.StdEncoding.EncodeToString([]byte(v.str)), nil
	case KindObjLink:
		o, i := v.ObjLink()
		return strconv.Itoa(int(o)) + ":" + strconv.Itoa(int(i)), nil
	}
	return "", fmt.Errorf("kind %s has no text form: %w", v.kind, ErrKindMismatch)
}

// formatFloat writes a finite float in decimal, always with a '.' or an
// exponent so that JSON readers (ours included) keep it a float.
func formatFloat(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("float %v has no decimal form: %w", f, ErrKindMismatch)
	}
	var s string
	if a := math.Abs(f); a == 0 || (a >= 1e-6 && a < 1e21) {
		s = strconv.FormatFloat(f, 'f', -1, 64)
	} else {
		s = strconv.FormatFloat(f, 'g', -1, 64)
	}
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s, nil
}

// parseText parses the plain-text form of kind k. Errors carry no sentinel;
// callers add the one fitting their context.
func parseText(k Kind, s string) (Value, error) {
	switch k {
	case KindString:
		if !utf8.ValidString(s) {
			return Value{}, fmt.Errorf("string is not valid UTF-8")
		}
		return StringValue(s), nil
	case KindInteger, KindTime:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%q is not a 64-bit decimal integer", clip(s))
		}
		return Value{kind: k, bits: uint64(i)}, nil
	case KindUnsigned:
		u, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%q is not a 64-bit unsigned decimal integer", clip(s))
		}
		return UnsignedValue(u), nil
	case KindFloat:
		// strconv also takes "NaN", "Inf", hex and underscores; LwM2M
		// text floats are plain decimals.
		if !isDecimalFloat(s) {
			return Value{}, fmt.Errorf("%q is not a decimal number", clip(s))
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%q is out of float64 range", clip(s))
		}
		return FloatValue(f), nil
	case KindBoolean:
		switch s {
		case "0":
			return BooleanValue(false), nil
		case "1":
			return BooleanValue(true), nil
		}
		return Value{}, fmt.Errorf("boolean %q is neither \"0\" nor \"1\"", clip(s))
	case KindOpaque:
		b, err := decodeBase64(s)
		if err != nil {
			return Value{}, err
		}
		return OpaqueValue(b), nil
	case KindObjLink:
		return parseObjLink(s)
	}
	return Value{}, fmt.Errorf("kind %s has no text form", k)
}

func parseObjLink(s string) (Value, error) {
	os, is, ok := strings.Cut(s, ":")
	if !ok {
		return Value{}, fmt.Errorf("object link %q is not \"object:instance\"", clip(s))
	}
	o, err1 := strconv.ParseUint(os, 10, 16)
	i, err2 := strconv.ParseUint(is, 10, 16)
	if err1 != nil || err2 != nil {
		return Value{}, fmt.Errorf("object link %q: ids must be decimal 0..65535", clip(s))
	}
	return ObjLinkValue(uint16(o), uint16(i)), nil
}

// isDecimalFloat accepts [+-]digits[.digits][(e|E)[+-]digits], with digits
// on at least one side of the point.
func isDecimalFloat(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

// decodeBase64 accepts standard or URL-safe alphabet, padded or not: LwM2M
// JSON and text use standard base64, SenML "vd" uses unpadded base64url,
// and clients mix them up.
func decodeBase64(s string) ([]byte, error) {
	t := strings.TrimRight(s, "=")
	if len(s)-len(t) > 2 {
		return nil, fmt.Errorf("base64: too much padding")
	}
	enc := base64.RawStdEncoding
	if strings.ContainsAny(t, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(t)
	if err != nil {
		return nil, fmt.Errorf("base64: %v", err)
	}
	return b, nil
}

// As converts v to kind k where that is exact: between the numeric kinds
// (Integer, Unsigned, Float, Time) when the number fits, and from a String
// holding k's plain-text form ("3:0" for ObjLink, base64 for Opaque, "0"/"1"
// for Boolean). It is how JSON input from the REST API or a format that
// only says "number" gets the kind the model requires.
func (v Value) As(k Kind) (Value, error) {
	if v.kind == k {
		return v, nil
	}
	switch {
	case v.kind == KindString && k != KindNone:
		w, err := parseText(k, v.str)
		if err != nil {
			return Value{}, fmt.Errorf("convert String to %s: %v: %w", k, err, ErrKindMismatch)
		}
		return w, nil
	case v.kind.numeric() && k.numeric():
		return v.convertNumber(k)
	}
	return Value{}, fmt.Errorf("cannot convert %s to %s: %w", v.kind, k, ErrKindMismatch)
}

// convertNumber converts between numeric kinds; int to float may round, as
// any float does, but float to int must be integral and in range.
func (v Value) convertNumber(k Kind) (Value, error) {
	fail := func() (Value, error) {
		return Value{}, fmt.Errorf("%s %s does not fit %s: %w", v.kind, v.String(), k, ErrKindMismatch)
	}
	switch v.kind {
	case KindInteger, KindTime:
		i := int64(v.bits)
		switch k {
		case KindInteger, KindTime:
			return Value{kind: k, bits: v.bits}, nil
		case KindUnsigned:
			if i < 0 {
				return fail()
			}
			return UnsignedValue(uint64(i)), nil
		case KindFloat:
			return FloatValue(float64(i)), nil
		}
	case KindUnsigned:
		switch k {
		case KindInteger, KindTime:
			if v.bits > math.MaxInt64 {
				return fail()
			}
			return Value{kind: k, bits: v.bits}, nil
		case KindFloat:
			return FloatValue(float64(v.bits)), nil
		}
	case KindFloat:
		f := v.Float()
		if f != math.Trunc(f) { // also rejects NaN and ±Inf
			return fail()
		}
		switch k {
		case KindInteger, KindTime:
			if f < -(1<<63) || f >= 1<<63 {
				return fail()
			}
			return Value{kind: k, bits: uint64(int64(f))}, nil
		case KindUnsigned:
			if f < 0 || f >= 1<<64 {
				return fail()
			}
			return UnsignedValue(uint64(f)), nil
		}
	}
	return fail()
}

// MarshalJSON renders the natural JSON value: string, number or bool;
// Opaque as a base64 string, ObjLink as "object:instance", Time as Unix
// seconds, KindNone as null. NaN and infinities are an error.
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.kind {
	case KindNone:
		return []byte("null"), nil
	case KindString:
		return json.Marshal(v.str)
	case KindBoolean:
		return []byte(strconv.FormatBool(v.bits == 1)), nil
	case KindOpaque, KindObjLink:
		s, _ := v.text()
		return json.Marshal(s)
	}
	s, err := v.text()
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// UnmarshalJSON reads what MarshalJSON writes, inferring the kind from the
// JSON type: string → String, bool → Boolean, null → None, and a number →
// Integer (no fraction or exponent, fits int64), Unsigned (fits uint64) or
// else Float. Use As to reach the kind a model gives (Opaque, ObjLink, ...).
func (v *Value) UnmarshalJSON(b []byte) error {
	var x any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return fmt.Errorf("value: %v: %w", err, ErrMalformed)
	}
	switch t := x.(type) {
	case nil:
		*v = Value{}
	case string:
		*v = StringValue(t)
	case bool:
		*v = BooleanValue(t)
	case json.Number:
		w, err := parseJSONNumber(string(t))
		if err != nil {
			return fmt.Errorf("value: %v: %w", err, ErrMalformed)
		}
		*v = w
	default:
		return fmt.Errorf("value: JSON %T is not a scalar: %w", x, ErrMalformed)
	}
	return nil
}

// parseJSONNumber keeps integers exact: JSON text without fraction or
// exponent is an Integer (or Unsigned beyond int64), anything else a Float.
func parseJSONNumber(s string) (Value, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return IntegerValue(i), nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return UnsignedValue(u), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Value{}, fmt.Errorf("number %s out of range", clip(s))
	}
	return FloatValue(f), nil
}

// clip shortens s for error messages so hostile input cannot bloat logs.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
