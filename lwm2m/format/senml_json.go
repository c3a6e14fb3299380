package format

import (
	"encoding/base64"
	"fmt"
)

// SenML JSON (content format 110): an array of records, RFC 8428 §5.

const senmlJSONName = "senml+json"

func decodeSenMLJSON(base Path, payload []byte, m Model) ([]Record, error) {
	recs, err := readSenMLJSON(payload)
	if err != nil {
		return nil, err
	}
	return resolveSenML(senmlJSONName, base, recs, m)
}

// readSenMLJSON parses a pack into records with base values applied; names
// are not yet paths, so RFC 8428's own examples can be checked too.
func readSenMLJSON(payload []byte) ([]senmlRecord, error) {
	if err := checkUTF8(senmlJSONName, payload); err != nil {
		return nil, err
	}
	r := newJSONReader(senmlJSONName, payload)
	if err := r.expect('['); err != nil {
		return nil, err
	}
	b := &senmlBuilder{format: senmlJSONName}
	for r.dec.More() {
		fields, err := r.flatObject("record", len(b.recs), "label")
		if err != nil {
			return nil, err
		}
		if err := b.add(fields); err != nil {
			return nil, err
		}
	}
	if err := r.expect(']'); err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return b.recs, nil
}

func encodeSenMLJSON(base Path, records []Record) ([]byte, error) {
	bn, names := senmlNames(base, records)
	b := []byte{'['}
	for i, rec := range records {
		var err error
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		sep := false
		key := func(k string) {
			if sep {
				b = append(b, ',')
			}
			sep = true
			b = append(b, '"')
			b = append(b, k...)
			b = append(b, '"', ':')
		}
		if i == 0 && bn != "" {
			key("bn")
			if b, err = appendJSONString(b, bn); err != nil {
				return nil, err
			}
		}
		if names[i] != "" {
			key("n")
			if b, err = appendJSONString(b, names[i]); err != nil {
				return nil, err
			}
		}
		if rec.Time != 0 {
			key("t")
			if b, err = appendJSONTime(b, rec.Time); err != nil {
				return nil, fmt.Errorf("%s: %s: time: %w", senmlJSONName, rec.Path, err)
			}
		}
		v := rec.Value
		switch v.kind {
		case KindNone:
			// A name alone: Read-Composite / Observe-Composite requests.
		case KindInteger, KindUnsigned, KindFloat, KindTime:
			key("v")
			b, err = appendJSONNumber(b, v)
		case KindString:
			key("vs")
			b, err = appendJSONString(b, v.str)
		case KindBoolean:
			key("vb")
			if v.Bool() {
				b = append(b, "true"...)
			} else {
				b = append(b, "false"...)
			}
		case KindOpaque:
			key("vd")
			b = append(b, '"')
			b = base64.RawURLEncoding.AppendEncode(b, []byte(v.str))
			b = append(b, '"')
		case KindObjLink:
			key("vlo")
			s, _ := v.text()
			b, err = appendJSONString(b, s)
		default:
			err = fmt.Errorf("unknown kind %s: %w", v.kind, ErrKindMismatch)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", senmlJSONName, rec.Path, err)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}
