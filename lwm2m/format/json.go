package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// jsonReader walks a JSON payload token by token. encoding/json's struct
// decoding matches keys case-insensitively and lets duplicates overwrite;
// SenML labels are case-sensitive, so the formats read tokens themselves.
type jsonReader struct {
	format string
	dec    *json.Decoder
}

func newJSONReader(format string, payload []byte) *jsonReader {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	return &jsonReader{format: format, dec: dec}
}

// checkUTF8 rejects payloads that are not UTF-8 (RFC 8259 §8.1), which
// encoding/json would otherwise silently turn into U+FFFD.
func checkUTF8(format string, payload []byte) error {
	if utf8.Valid(payload) {
		return nil
	}
	off := 0
	for off < len(payload) {
		r, n := utf8.DecodeRune(payload[off:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		off += n
	}
	return fmt.Errorf("%s: invalid UTF-8 at offset %d: %w", format, off, ErrMalformed)
}

func (r *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s at offset %d: %w", r.format, fmt.Sprintf(format, args...), r.dec.InputOffset(), ErrMalformed)
}

func (r *jsonReader) token() (json.Token, error) {
	t, err := r.dec.Token()
	if err == io.EOF {
		return nil, r.errorf("unexpected end of input")
	}
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s: %s at offset %d: %w", r.format, se.Error(), se.Offset, ErrMalformed)
		}
		return nil, r.errorf("%v", err)
	}
	return t, nil
}

func (r *jsonReader) expect(d json.Delim) error {
	t, err := r.token()
	if err != nil {
		return err
	}
	if t != d {
		return r.errorf("want %q, got %s", string(d), describeToken(t))
	}
	return nil
}

// key reads an object key, or reports false at the closing '}'.
func (r *jsonReader) key() (string, bool, error) {
	if !r.dec.More() {
		return "", false, r.expect('}')
	}
	t, err := r.token()
	if err != nil {
		return "", false, err
	}
	k, ok := t.(string)
	if !ok {
		return "", false, r.errorf("want object key, got %s", describeToken(t))
	}
	return k, true, nil
}

// scalar reads a value that must not be an object or array; nesting is
// refused outright, which also bounds recursion.
func (r *jsonReader) scalar(label string) (json.Token, error) {
	t, err := r.token()
	if err != nil {
		return nil, err
	}
	if _, ok := t.(json.Delim); ok {
		return nil, r.errorf("label %q: nested %s not supported", label, describeToken(t))
	}
	return t, nil
}

// end checks nothing follows the top-level value.
func (r *jsonReader) end() error {
	t, err := r.dec.Token()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return r.errorf("after top-level value: %v", err)
	}
	return r.errorf("unexpected %s after top-level value", describeToken(t))
}

func describeToken(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		return "'" + v.String() + "'"
	case string:
		return "string " + strconv.Quote(clip(v))
	case json.Number:
		return "number " + clip(string(v))
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", t)
}

// jsonField converts a scalar token to a SenML field.
func (r *jsonReader) field(label string, t json.Token) (senmlField, error) {
	f := senmlField{label: label}
	switch v := t.(type) {
	case string:
		f.typ, f.s = fieldString, v
	case bool:
		f.typ, f.b = fieldBool, v
	case json.Number:
		num, err := parseJSONNumber(string(v))
		if err != nil {
			return f, r.errorf("label %q: %v", label, err)
		}
		f.typ, f.num = fieldNumber, num
		f.f, _ = strconv.ParseFloat(string(v), 64) // finite: parseJSONNumber succeeded
	default:
		return f, r.errorf("label %q: %s is not allowed", label, describeToken(t))
	}
	return f, nil
}

// appendJSONString writes s as a JSON string with only the escapes JSON
// requires (encoding/json would also escape <, > and &).
func appendJSONString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("string %q is not valid UTF-8: %w", clip(s), ErrKindMismatch)
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"'), nil
}

// appendJSONTime writes a SenML time, as an integer when it is one.
func appendJSONTime(b []byte, t float64) ([]byte, error) {
	if t == float64(int64(t)) && t > -(1<<53) && t < 1<<53 {
		return strconv.AppendInt(b, int64(t), 10), nil
	}
	s, err := formatFloat(t)
	if err != nil {
		return nil, err
	}
	return append(b, s...), nil
}

// appendJSONNumber writes a numeric value; floats always carry '.' or an
// exponent so a reader without a model keeps them floats.
func appendJSONNumber(b []byte, v Value) ([]byte, error) {
	switch v.kind {
	case KindInteger, KindTime:
		return strconv.AppendInt(b, int64(v.bits), 10), nil
	case KindUnsigned:
		return strconv.AppendUint(b, v.bits, 10), nil
	case KindFloat:
		s, err := formatFloat(v.Float())
		if err != nil {
			return nil, err
		}
		return append(b, s...), nil
	}
	return nil, fmt.Errorf("%s is not a number: %w", v.kind, ErrKindMismatch)
}
