package format

import (
	"fmt"
	"math"
	"strings"
)

// Shared SenML machinery (RFC 8428 as profiled by LwM2M 1.1 §7.4.4-7.4.5):
// both representations feed labelled fields into senmlBuilder, which applies
// base name and base time, then resolve turns names into paths.

// senmlMaxVersion is the SenML version RFC 8428 defines; a pack declaring a
// later "bver" must not be used (RFC 8428 §4.4).
const senmlMaxVersion = 10

// valueCarrier says how a value was written, i.e. what a model may refine.
type valueCarrier uint8

const (
	carrierTyped  valueCarrier = iota // the label fixes the kind
	carrierNumber                     // "v": any numeric kind
	carrierString                     // LwM2M JSON "sv": String or base64 Opaque
)

// senmlRecord is a record with base values applied, before path parsing.
type senmlRecord struct {
	name    string
	time    float64
	value   Value
	carrier valueCarrier
}

type fieldType uint8

const (
	fieldString fieldType = iota
	fieldNumber
	fieldBool
	fieldBytes
)

func (t fieldType) String() string {
	switch t {
	case fieldString:
		return "string"
	case fieldNumber:
		return "number"
	case fieldBool:
		return "boolean"
	}
	return "byte string"
}

// senmlField is one label/value pair of a SenML record.
type senmlField struct {
	label string
	typ   fieldType
	s     string  // fieldString
	num   Value   // fieldNumber: Integer, Unsigned or Float as written
	f     float64 // fieldNumber as float64, for times
	b     bool    // fieldBool
	bytes []byte  // fieldBytes (CBOR only)
}

type senmlBuilder struct {
	format   string
	baseName string
	baseTime float64
	recs     []senmlRecord
}

// add applies one record's fields; seen duplicate labels are the caller's
// to reject since only it knows the wire form.
func (b *senmlBuilder) add(fields []senmlField) error {
	i := len(b.recs)
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: record %d: %s", b.format, i, fmt.Sprintf(format, args...))
	}
	want := func(f senmlField, t fieldType) error {
		if f.typ != t {
			return fmt.Errorf("%w: %w", errf("label %q must be a %s, got a %s", f.label, t, f.typ), ErrMalformed)
		}
		return nil
	}
	var (
		name, hasValue = "", false
		t              float64
		rec            senmlRecord
	)
	setValue := func(f senmlField, v Value, c valueCarrier) error {
		if hasValue {
			return fmt.Errorf("%w: %w", errf("more than one value label (%q)", f.label), ErrMalformed)
		}
		hasValue, rec.value, rec.carrier = true, v, c
		return nil
	}
	// Base fields apply to this record too, so handle them first.
	for _, f := range fields {
		switch f.label {
		case "bn":
			if err := want(f, fieldString); err != nil {
				return err
			}
			b.baseName = f.s
		case "bt":
			if err := want(f, fieldNumber); err != nil {
				return err
			}
			if math.IsNaN(f.f) || math.IsInf(f.f, 0) {
				return fmt.Errorf("%w: %w", errf("base time %v is not finite", f.f), ErrMalformed)
			}
			b.baseTime = f.f
		case "bver":
			if err := want(f, fieldNumber); err != nil {
				return err
			}
			if f.num.kind != KindInteger || f.num.Int() < 1 {
				return fmt.Errorf("%w: %w", errf("bver %s is not a positive integer", f.num), ErrMalformed)
			}
			if f.num.Int() > senmlMaxVersion {
				return fmt.Errorf("%w: %w", errf("SenML version %d is newer than %d", f.num.Int(), senmlMaxVersion), ErrUnsupportedFormat)
			}
		}
	}
	for _, f := range fields {
		var err error
		switch f.label {
		case "bn", "bt", "bver":
		case "n":
			err = want(f, fieldString)
			name = f.s
		case "t":
			if err = want(f, fieldNumber); err == nil && (math.IsNaN(f.f) || math.IsInf(f.f, 0)) {
				err = fmt.Errorf("%w: %w", errf("time %v is not finite", f.f), ErrMalformed)
			}
			t = f.f
		case "v":
			if err = want(f, fieldNumber); err == nil {
				err = setValue(f, f.num, carrierNumber)
			}
		case "vs":
			if err = want(f, fieldString); err == nil {
				err = setValue(f, StringValue(f.s), carrierTyped)
			}
		case "vb":
			if err = want(f, fieldBool); err == nil {
				err = setValue(f, BooleanValue(f.b), carrierTyped)
			}
		case "vd":
			var data []byte
			switch f.typ {
			case fieldBytes:
				data = f.bytes
			case fieldString: // JSON: base64url
				var derr error
				if data, derr = decodeBase64(f.s); derr != nil {
					err = fmt.Errorf("%w: %w", errf("vd: %v", derr), ErrMalformed)
				}
			default:
				err = want(f, fieldBytes)
			}
			if err == nil {
				err = setValue(f, OpaqueValue(data), carrierTyped)
			}
		case "vlo":
			if err = want(f, fieldString); err == nil {
				v, perr := parseObjLink(f.s)
				if perr != nil {
					err = fmt.Errorf("%w: %w", errf("vlo: %v", perr), ErrMalformed)
				} else {
					err = setValue(f, v, carrierTyped)
				}
			}
		case "u", "bu", "ut":
			// Units and update time do not change the LwM2M value.
		case "bv", "bs", "s":
			// Base value and sums would change what "v" means; refuse them
			// rather than return wrong numbers.
			err = fmt.Errorf("%w: %w", errf("label %q is not supported", f.label), ErrUnsupportedFormat)
		default:
			if strings.HasSuffix(f.label, "_") {
				err = fmt.Errorf("%w: %w", errf("must-understand label %q is not supported", f.label), ErrUnsupportedFormat)
			}
			// Other unknown labels are ignored (RFC 8428 §4.4).
		}
		if err != nil {
			return err
		}
	}
	rec.name = b.baseName + name
	rec.time = b.baseTime + t
	if math.IsInf(rec.time, 0) {
		// Two finite but huge times can still sum to infinity.
		return fmt.Errorf("%w: %w", errf("time %v + %v overflows", b.baseTime, t), ErrMalformed)
	}
	b.recs = append(b.recs, rec)
	return nil
}

// resolve parses the records' names into paths under base and lets the
// model refine values whose wire form does not fix the kind.
func resolveSenML(format string, base Path, recs []senmlRecord, m Model) ([]Record, error) {
	out := make([]Record, 0, len(recs))
	for i, r := range recs {
		p, err := ParsePath(r.name)
		if err != nil {
			return nil, fmt.Errorf("%s: record %d: name %q: %v: %w", format, i, clip(r.name), err, ErrMalformed)
		}
		if !base.Contains(p) {
			return nil, fmt.Errorf("%s: record %d: path %s is not under base %s: %w", format, i, p, base, ErrInvalidPath)
		}
		v := r.value
		if k, ok := modelKind(m, p); ok && k != v.kind {
			switch {
			case r.carrier == carrierNumber && k.numeric():
				if v, err = v.As(k); err != nil {
					return nil, fmt.Errorf("%s: record %d: %s: %w", format, i, p, err)
				}
			case r.carrier == carrierString && k == KindOpaque:
				b, err := decodeBase64(v.str)
				if err != nil {
					return nil, fmt.Errorf("%s: record %d: %s: opaque %v: %w", format, i, p, err, ErrMalformed)
				}
				v = OpaqueValue(b)
			}
			// Otherwise the payload's explicit type stands: it is what the
			// device sent, and converting could lose or invent data.
		}
		out = append(out, Record{Path: p, Value: v, Time: r.time})
	}
	return out, nil
}

// senmlNames picks the base name and per-record names for encoding: names
// relative to "base/" as in the LwM2M examples ({"bn":"/3/0/","n":"0"}),
// or to "base" when a record is base itself, or absolute for the root.
func senmlNames(base Path, records []Record) (bn string, names []string) {
	names = make([]string, len(records))
	if base.Depth() == 0 {
		for i, r := range records {
			names[i] = r.Path.String()
		}
		return "", names
	}
	bn = base.String()
	sep := true
	for _, r := range records {
		if r.Path == base {
			sep = false
		}
	}
	if sep {
		bn += "/"
	}
	for i, r := range records {
		names[i] = strings.TrimPrefix(r.Path.String(), bn)
	}
	return bn, names
}
