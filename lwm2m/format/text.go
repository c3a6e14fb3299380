package format

import (
	"fmt"
	"unicode/utf8"
)

// Plain text (0) and opaque (42) carry one resource value with no path and
// no type, so the request path says where it goes and the model what it is.

func requireResourcePath(format string, base Path) error {
	if d := base.Depth(); d < 3 {
		return fmt.Errorf("%s: base path %s is not a resource or resource instance: %w", format, base, ErrInvalidPath)
	}
	return nil
}

// singleRecord returns the one record a single-value format can carry; it
// must sit at base itself since the payload cannot name another path.
func singleRecord(format string, base Path, records []Record) (Record, error) {
	if err := requireResourcePath(format, base); err != nil {
		return Record{}, err
	}
	if len(records) != 1 {
		return Record{}, fmt.Errorf("%s: carries exactly one value, got %d records: %w", format, len(records), ErrKindMismatch)
	}
	r := records[0]
	if r.Path != base {
		return Record{}, fmt.Errorf("%s: record path %s differs from base %s: %w", format, r.Path, base, ErrInvalidPath)
	}
	return r, nil
}

func decodeText(base Path, payload []byte, m Model) ([]Record, error) {
	if err := requireResourcePath("text", base); err != nil {
		return nil, err
	}
	k, ok := modelKind(m, base)
	if !ok {
		k = KindString // unknown resource: the text itself is all we know
	}
	v, err := parseText(k, string(payload))
	if err != nil {
		return nil, fmt.Errorf("text: %s as %s: %v: %w", base, k, err, ErrMalformed)
	}
	return []Record{{Path: base, Value: v}}, nil
}

func encodeText(base Path, records []Record) ([]byte, error) {
	r, err := singleRecord("text", base, records)
	if err != nil {
		return nil, err
	}
	if r.Value.kind == KindString && !utf8.ValidString(r.Value.str) {
		return nil, fmt.Errorf("text: %s: string is not valid UTF-8: %w", r.Path, ErrKindMismatch)
	}
	s, err := r.Value.text()
	if err != nil {
		return nil, fmt.Errorf("text: %s: %w", r.Path, err)
	}
	return []byte(s), nil
}

func decodeOpaque(base Path, payload []byte) ([]Record, error) {
	if err := requireResourcePath("opaque", base); err != nil {
		return nil, err
	}
	return []Record{{Path: base, Value: OpaqueValue(payload)}}, nil
}

func encodeOpaque(base Path, records []Record) ([]byte, error) {
	r, err := singleRecord("opaque", base, records)
	if err != nil {
		return nil, err
	}
	if r.Value.kind != KindOpaque {
		return nil, fmt.Errorf("opaque: %s: cannot carry a %s value: %w", r.Path, r.Value.kind, ErrKindMismatch)
	}
	return []byte(r.Value.str), nil
}
