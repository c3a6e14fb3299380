package format

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// SenML CBOR (content format 112): RFC 8428 §6, integer labels, plus the
// LwM2M 1.1 object link label "vlo" which has no integer and stays text.

const senmlCBORName = "senml+cbor"

// senmlCBORLabel maps RFC 8428 Table 4 integer labels to their names.
func senmlCBORLabel(i int64) (string, bool) {
	switch i {
	case -1:
		return "bver", true
	case -2:
		return "bn", true
	case -3:
		return "bt", true
	case -4:
		return "bu", true
	case -5:
		return "bv", true
	case -6:
		return "bs", true
	case 0:
		return "n", true
	case 1:
		return "u", true
	case 2:
		return "v", true
	case 3:
		return "vs", true
	case 4:
		return "vb", true
	case 5:
		return "s", true
	case 6:
		return "t", true
	case 7:
		return "ut", true
	case 8:
		return "vd", true
	}
	return "", false
}

// senmlKnownText reports text labels the builder interprets; any other text
// label is skipped unless it is must-understand (ends in '_').
func senmlKnownText(label string) bool {
	switch label {
	case "bver", "bn", "bt", "bu", "bv", "bs", "n", "u", "v", "vs", "vb", "s", "t", "ut", "vd", "vlo":
		return true
	}
	return strings.HasSuffix(label, "_")
}

func decodeSenMLCBOR(base Path, payload []byte, m Model) ([]Record, error) {
	recs, err := readSenMLCBOR(payload)
	if err != nil {
		return nil, err
	}
	return resolveSenML(senmlCBORName, base, recs, m)
}

// readSenMLCBOR parses a pack into records with base values applied.
func readSenMLCBOR(payload []byte) ([]senmlRecord, error) {
	r := &cborReader{format: senmlCBORName, b: payload}
	top, err := r.head()
	if err != nil {
		return nil, err
	}
	if top.major != cborArray {
		return nil, r.errorf(top.off, "pack must be an array, got a %s", cborMajorName(top.major))
	}
	b := &senmlBuilder{format: senmlCBORName}
	for i := uint64(0); r.more(top, i); i++ {
		mh, err := r.head()
		if err != nil {
			return nil, err
		}
		if mh.major != cborMap {
			return nil, r.errorf(mh.off, "record %d must be a map, got a %s", i, cborMajorName(mh.major))
		}
		var fields []senmlField
		seen := map[string]bool{}
		for j := uint64(0); r.more(mh, j); j++ {
			kh, ks, err := r.scalar()
			if err != nil {
				return nil, err
			}
			var label string
			known := false
			switch kh.major {
			case cborUint, cborNegint:
				if kh.arg <= math.MaxInt32 {
					n := int64(kh.arg)
					if kh.major == cborNegint {
						n = -1 - n
					}
					label, known = senmlCBORLabel(n)
				}
			case cborText:
				label = string(ks)
				known = senmlKnownText(label)
			default:
				return nil, r.errorf(kh.off, "record %d: map key must be an integer or text, got a %s", i, cborMajorName(kh.major))
			}
			if !known {
				// Unknown labels are ignored (RFC 8428 §4.4).
				if err := r.skip(0); err != nil {
					return nil, err
				}
				continue
			}
			if seen[label] {
				return nil, r.errorf(kh.off, "record %d: duplicate label %q", i, clip(label))
			}
			seen[label] = true
			f, err := r.field(label)
			if err != nil {
				return nil, err
			}
			fields = append(fields, f)
		}
		if err := b.add(fields); err != nil {
			return nil, err
		}
	}
	if r.off != len(payload) {
		return nil, r.errorf(r.off, "%d bytes after the pack", len(payload)-r.off)
	}
	return b.recs, nil
}

// field reads a label's scalar value.
func (r *cborReader) field(label string) (senmlField, error) {
	f := senmlField{label: label}
	h, s, err := r.scalar()
	if err != nil {
		return f, err
	}
	switch h.major {
	case cborText:
		f.typ, f.s = fieldString, string(s)
		return f, nil
	case cborBytes:
		f.typ, f.bytes = fieldBytes, s
		return f, nil
	case cborSimple:
		switch {
		case h.info == 20 || h.info == 21:
			f.typ, f.b = fieldBool, h.info == 21
			return f, nil
		case h.info < 25:
			return f, r.errorf(h.off, "label %q: simple value %d not allowed", label, h.arg)
		}
	}
	num, fl, ok, err := r.number(h)
	if err != nil {
		return f, err
	}
	if !ok {
		return f, r.errorf(h.off, "label %q: %s not allowed", label, cborMajorName(h.major))
	}
	f.typ, f.num, f.f = fieldNumber, num, fl
	return f, nil
}

func encodeSenMLCBOR(base Path, records []Record) ([]byte, error) {
	bn, names := senmlNames(base, records)
	b := cborAppendHead(nil, cborArray, uint64(len(records)))
	for i, rec := range records {
		v := rec.Value
		if math.IsNaN(rec.Time) || math.IsInf(rec.Time, 0) {
			return nil, fmt.Errorf("%s: %s: time %v is not finite: %w", senmlCBORName, rec.Path, rec.Time, ErrKindMismatch)
		}
		if v.kind == KindString && !utf8.ValidString(v.str) {
			return nil, fmt.Errorf("%s: %s: string is not valid UTF-8: %w", senmlCBORName, rec.Path, ErrKindMismatch)
		}
		n := 0
		withBN := i == 0 && bn != ""
		for _, present := range []bool{withBN, names[i] != "", rec.Time != 0, v.kind != KindNone} {
			if present {
				n++
			}
		}
		b = cborAppendHead(b, cborMap, uint64(n))
		if withBN {
			b = cborAppendText(cborAppendInt(b, -2), bn)
		}
		if names[i] != "" {
			b = cborAppendText(cborAppendInt(b, 0), names[i])
		}
		if rec.Time != 0 {
			b = cborAppendInt(b, 6)
			if t := rec.Time; t == float64(int64(t)) && t > -(1<<53) && t < 1<<53 {
				b = cborAppendInt(b, int64(t))
			} else {
				b = cborAppendFloat(b, t)
			}
		}
		switch v.kind {
		case KindNone:
		case KindInteger, KindTime:
			b = cborAppendInt(cborAppendInt(b, 2), int64(v.bits))
		case KindUnsigned:
			b = cborAppendHead(cborAppendInt(b, 2), cborUint, v.bits)
		case KindFloat:
			b = cborAppendFloat(cborAppendInt(b, 2), v.Float())
		case KindString:
			b = cborAppendText(cborAppendInt(b, 3), v.str)
		case KindBoolean:
			b = cborAppendBool(cborAppendInt(b, 4), v.Bool())
		case KindOpaque:
			b = cborAppendBytes(cborAppendInt(b, 8), v.str)
		case KindObjLink:
			s, _ := v.text()
			b = cborAppendText(cborAppendText(b, "vlo"), s)
		default:
			return nil, fmt.Errorf("%s: %s: unknown kind %s: %w", senmlCBORName, rec.Path, v.kind, ErrKindMismatch)
		}
	}
	return b, nil
}
