package format

import (
	"fmt"
	"math"
	"strconv"
)

// OMA LwM2M JSON (content format 11543, TS 1.0 §6.4.4): an object with
// base name "bn", base time "bt" and entries "e", each with name "n",
// time "t" and one of "v" (number), "sv" (string; base64 for opaque),
// "bv" (boolean) or "ov" (object link "3:0").

const lwm2mJSONName = "lwm2m+json"

func decodeLwM2MJSON(base Path, payload []byte, m Model) ([]Record, error) {
	if err := checkUTF8(lwm2mJSONName, payload); err != nil {
		return nil, err
	}
	r := newJSONReader(lwm2mJSONName, payload)
	if err := r.expect('{'); err != nil {
		return nil, err
	}
	var (
		bn         string
		hasBN      bool
		bt         float64
		entries    [][]senmlField
		seen       = map[string]bool{}
		hasEntries bool
	)
	for {
		k, ok, err := r.key()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if seen[k] {
			return nil, r.errorf("duplicate key %q", clip(k))
		}
		seen[k] = true
		switch k {
		case "e":
			hasEntries = true
			if entries, err = r.lwm2mEntries(); err != nil {
				return nil, err
			}
		case "bn", "bt":
			t, err := r.scalar(k)
			if err != nil {
				return nil, err
			}
			f, err := r.field(k, t)
			if err != nil {
				return nil, err
			}
			if k == "bn" {
				if f.typ != fieldString {
					return nil, r.errorf("bn must be a string")
				}
				bn, hasBN = f.s, true
			} else {
				if f.typ != fieldNumber {
					return nil, r.errorf("bt must be a number")
				}
				bt = f.f
			}
		default:
			// Unknown members are ignored, but only as scalars so nesting
			// stays bounded.
			if _, err := r.scalar(k); err != nil {
				return nil, err
			}
		}
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	if !hasEntries {
		return nil, fmt.Errorf("%s: no \"e\" array: %w", lwm2mJSONName, ErrMalformed)
	}

	// Without "bn", names are relative to the request path.
	prefix := bn
	if !hasBN {
		prefix = base.String()
		if prefix != "/" {
			prefix += "/"
		}
	}
	recs := make([]senmlRecord, 0, len(entries))
	for i, fields := range entries {
		rec := senmlRecord{time: bt}
		var name string
		hasValue := false
		for _, f := range fields {
			bad := func(want string) error {
				return fmt.Errorf("%s: entry %d: %q must be %s: %w", lwm2mJSONName, i, f.label, want, ErrMalformed)
			}
			setValue := func(v Value, c valueCarrier) error {
				if hasValue {
					return fmt.Errorf("%s: entry %d: more than one value (%q): %w", lwm2mJSONName, i, f.label, ErrMalformed)
				}
				hasValue, rec.value, rec.carrier = true, v, c
				return nil
			}
			var err error
			switch f.label {
			case "n":
				if f.typ != fieldString {
					return nil, bad("a string")
				}
				name = f.s
			case "t":
				if f.typ != fieldNumber {
					return nil, bad("a number")
				}
				rec.time = bt + f.f
				if math.IsInf(rec.time, 0) {
					return nil, fmt.Errorf("%s: entry %d: time %v + %v overflows: %w", lwm2mJSONName, i, bt, f.f, ErrMalformed)
				}
			case "v":
				if f.typ != fieldNumber {
					return nil, bad("a number")
				}
				err = setValue(f.num, carrierNumber)
			case "sv":
				if f.typ != fieldString {
					return nil, bad("a string")
				}
				err = setValue(StringValue(f.s), carrierString)
			case "bv":
				if f.typ != fieldBool {
					return nil, bad("a boolean")
				}
				err = setValue(BooleanValue(f.b), carrierTyped)
			case "ov":
				if f.typ != fieldString {
					return nil, bad("a string")
				}
				v, perr := parseObjLink(f.s)
				if perr != nil {
					return nil, fmt.Errorf("%s: entry %d: ov: %v: %w", lwm2mJSONName, i, perr, ErrMalformed)
				}
				err = setValue(v, carrierTyped)
			}
			if err != nil {
				return nil, err
			}
		}
		if !hasValue {
			return nil, fmt.Errorf("%s: entry %d has no value: %w", lwm2mJSONName, i, ErrMalformed)
		}
		switch {
		case hasBN:
			rec.name = prefix + name
		case name == "":
			rec.name = base.String()
		case name[0] == '/':
			rec.name = name
		default:
			rec.name = prefix + name
		}
		recs = append(recs, rec)
	}
	return resolveSenML(lwm2mJSONName, base, recs, m)
}

// flatObject reads one JSON object of scalar fields (a SenML record or an
// LwM2M JSON entry); what, n and label name it in errors.
func (r *jsonReader) flatObject(what string, n int, label string) ([]senmlField, error) {
	if err := r.expect('{'); err != nil {
		return nil, err
	}
	var fields []senmlField
	seen := map[string]bool{}
	for {
		k, ok, err := r.key()
		if err != nil {
			return nil, err
		}
		if !ok {
			return fields, nil
		}
		if seen[k] {
			return nil, r.errorf("%s %d: duplicate %s %q", what, n, label, clip(k))
		}
		seen[k] = true
		t, err := r.scalar(k)
		if err != nil {
			return nil, err
		}
		f, err := r.field(k, t)
		if err != nil {
			return nil, err
		}
		fields = append(fields, f)
	}
}

// lwm2mEntries reads the "e" array of flat entry objects.
func (r *jsonReader) lwm2mEntries() ([][]senmlField, error) {
	if err := r.expect('['); err != nil {
		return nil, err
	}
	var entries [][]senmlField
	for r.dec.More() {
		fields, err := r.flatObject("entry", len(entries), "key")
		if err != nil {
			return nil, err
		}
		entries = append(entries, fields)
	}
	return entries, r.expect(']')
}

func encodeLwM2MJSON(base Path, records []Record) ([]byte, error) {
	bn, names := senmlNames(base, records)
	b := []byte{'{'}
	var err error
	if bn != "" {
		b = append(b, `"bn":`...)
		if b, err = appendJSONString(b, bn); err != nil {
			return nil, err
		}
		b = append(b, ',')
	}
	b = append(b, `"e":[`...)
	for i, rec := range records {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if names[i] != "" {
			b = append(b, `"n":`...)
			if b, err = appendJSONString(b, names[i]); err != nil {
				return nil, err
			}
			b = append(b, ',')
		}
		if rec.Time != 0 {
			b = append(b, `"t":`...)
			if b, err = appendJSONTime(b, rec.Time); err != nil {
				return nil, fmt.Errorf("%s: %s: time: %w", lwm2mJSONName, rec.Path, err)
			}
			b = append(b, ',')
		}
		v := rec.Value
		switch v.kind {
		case KindInteger, KindUnsigned, KindFloat, KindTime:
			b = append(b, `"v":`...)
			b, err = appendJSONNumber(b, v)
		case KindString:
			b = append(b, `"sv":`...)
			b, err = appendJSONString(b, v.str)
		case KindOpaque:
			s, _ := v.text() // base64
			b = append(b, `"sv":`...)
			b, err = appendJSONString(b, s)
		case KindBoolean:
			b = append(b, `"bv":`...)
			b = strconv.AppendBool(b, v.Bool())
		case KindObjLink:
			s, _ := v.text()
			b = append(b, `"ov":`...)
			b, err = appendJSONString(b, s)
		default:
			// LwM2M 1.0 JSON has no value-less entries.
			err = fmt.Errorf("%s record has no LwM2M JSON form: %w", v.kind, ErrKindMismatch)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", lwm2mJSONName, rec.Path, err)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}
