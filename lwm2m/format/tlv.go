package format

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// OMA LwM2M TLV (TS 1.0 §6.4.3). Type byte: bits 7-6 identifier type,
// bit 5 identifier length (0: 8-bit, 1: 16-bit), bits 4-3 length type
// (00: length in bits 2-0, 01/10/11: 8/16/24-bit length field).

// TLV identifier types.
const (
	tlvObjectInstance   = 0
	tlvResourceInstance = 1
	tlvMultipleResource = 2
	tlvResource         = 3
)

// maxTLVLength is the largest value a 24-bit length field can describe.
const maxTLVLength = 1<<24 - 1

func tlvTypeName(t byte) string {
	switch t {
	case tlvObjectInstance:
		return "object instance"
	case tlvResourceInstance:
		return "resource instance"
	case tlvMultipleResource:
		return "multiple resource"
	}
	return "resource"
}

// tlv is one parsed element; its value is payload[lo:hi] and off is its
// header's offset, all absolute so errors point into the original payload.
type tlv struct {
	typ    byte
	id     uint16
	off    int
	lo, hi int
}

// eachTLV calls fn for each consecutive TLV in payload[lo:hi], checking
// every length against what remains before slicing. It walks rather than
// collects, so a payload of many tiny TLVs costs no memory and the first
// bad element stops the walk.
func eachTLV(payload []byte, lo, hi int, fn func(tlv) error) error {
	for off := lo; off < hi; {
		typ := payload[off]
		idLen := 1
		if typ&0x20 != 0 {
			idLen = 2
		}
		lenLen := int(typ>>3) & 3
		need := 1 + idLen + lenLen
		if hi-off < need {
			return fmt.Errorf("tlv: header needs %d bytes, %d remain at offset %d: %w", need, hi-off, off, ErrMalformed)
		}
		p := off + 1
		var id uint16
		if idLen == 1 {
			id = uint16(payload[p])
		} else {
			id = binary.BigEndian.Uint16(payload[p:])
		}
		p += idLen
		n := int(typ & 7)
		if lenLen > 0 {
			// Bits 2-0 are unused with a length field; ignore them.
			n = 0
			for i := 0; i < lenLen; i++ {
				n = n<<8 | int(payload[p+i])
			}
			p += lenLen
		}
		if n > hi-p {
			return fmt.Errorf("tlv: length %d exceeds remaining %d bytes at offset %d: %w", n, hi-p, off, ErrMalformed)
		}
		if err := fn(tlv{typ: typ >> 6, id: id, off: off, lo: p, hi: p + n}); err != nil {
			return err
		}
		off = p + n
	}
	return nil
}

type tlvDecoder struct {
	payload []byte
	m       Model
	out     []Record
}

func decodeTLV(base Path, payload []byte, m Model) ([]Record, error) {
	d := &tlvDecoder{payload: payload, m: m}
	var err error
	switch base.Depth() {
	case 0:
		return nil, fmt.Errorf("tlv: base path / cannot be used: TLV carries no object id: %w", ErrInvalidPath)
	case 1:
		seen := map[uint16]bool{}
		err = eachTLV(payload, 0, len(payload), func(t tlv) error {
			if t.typ != tlvObjectInstance {
				// A bare resource under an object path would need a guessed
				// instance id; refuse rather than guess.
				return fmt.Errorf("tlv: %s TLV at offset %d where object path %s needs object instance TLVs: %w", tlvTypeName(t.typ), t.off, base, ErrMalformed)
			}
			if seen[t.id] {
				return fmt.Errorf("tlv: duplicate object instance %d at offset %d: %w", t.id, t.off, ErrMalformed)
			}
			seen[t.id] = true
			inst := base.Child(t.id)
			if t.lo == t.hi {
				d.out = append(d.out, Record{Path: inst, Value: Value{}})
				return nil
			}
			return d.instance(inst, t, map[uint16]bool{})
		})
	case 2:
		seen := map[uint16]bool{}
		err = eachTLV(payload, 0, len(payload), func(t tlv) error {
			if t.typ == tlvObjectInstance {
				// Clients may wrap a single instance's resources; accept it
				// when it is the requested instance.
				if int32(t.id) != base.Instance {
					return fmt.Errorf("tlv: object instance %d at offset %d does not match base %s: %w", t.id, t.off, base, ErrMalformed)
				}
				return d.instance(base, t, seen)
			}
			return d.resource(base, t, seen)
		})
	case 3:
		inst := NewPath(uint16(base.Object), uint16(base.Instance))
		seen := map[uint16]bool{}
		count := 0
		whole := false // a resource or multiple resource TLV was seen
		err = eachTLV(payload, 0, len(payload), func(t tlv) error {
			count++
			if whole || (count > 1 && (t.typ == tlvResource || t.typ == tlvMultipleResource)) {
				return fmt.Errorf("tlv: TLV at offset %d: a resource TLV must be alone in a payload for %s: %w", t.off, base, ErrMalformed)
			}
			switch t.typ {
			case tlvResource, tlvMultipleResource:
				if int32(t.id) != base.Resource {
					return fmt.Errorf("tlv: resource %d at offset %d does not match base %s: %w", t.id, t.off, base, ErrMalformed)
				}
				whole = true
				return d.resource(inst, t, map[uint16]bool{})
			case tlvResourceInstance:
				// Bare resource instances of the requested resource.
				return d.resourceInstance(base, t, seen)
			}
			return fmt.Errorf("tlv: %s TLV at offset %d not allowed for resource path %s: %w", tlvTypeName(t.typ), t.off, base, ErrMalformed)
		})
	case 4:
		res := NewPath(uint16(base.Object), uint16(base.Instance), uint16(base.Resource))
		count := 0
		err = eachTLV(payload, 0, len(payload), func(t tlv) error {
			if count++; count > 1 {
				return fmt.Errorf("tlv: second TLV at offset %d for resource instance path %s, want 1: %w", t.off, base, ErrMalformed)
			}
			if t.typ != tlvResourceInstance || int32(t.id) != base.ResourceInstance {
				return fmt.Errorf("tlv: %s TLV %d at offset %d does not match resource instance path %s: %w", tlvTypeName(t.typ), t.id, t.off, base, ErrMalformed)
			}
			return d.resourceInstance(res, t, map[uint16]bool{})
		})
	}
	if err != nil {
		return nil, err
	}
	return d.out, nil
}

// instance decodes the resources inside object instance TLV t.
func (d *tlvDecoder) instance(inst Path, t tlv, seen map[uint16]bool) error {
	return eachTLV(d.payload, t.lo, t.hi, func(r tlv) error {
		return d.resource(inst, r, seen)
	})
}

// resource decodes a resource or multiple resource TLV below inst.
func (d *tlvDecoder) resource(inst Path, t tlv, seen map[uint16]bool) error {
	if t.typ != tlvResource && t.typ != tlvMultipleResource {
		return fmt.Errorf("tlv: %s TLV at offset %d inside object instance %s: %w", tlvTypeName(t.typ), t.off, inst, ErrMalformed)
	}
	if seen[t.id] {
		return fmt.Errorf("tlv: duplicate resource %d in %s at offset %d: %w", t.id, inst, t.off, ErrMalformed)
	}
	seen[t.id] = true
	p := inst.Child(t.id)
	if t.typ == tlvResource {
		v, err := d.value(p, t)
		if err != nil {
			return err
		}
		d.out = append(d.out, Record{Path: p, Value: v})
		return nil
	}
	if t.lo == t.hi {
		// An empty multiple resource is meaningful (e.g. to clear it on
		// Write-Replace); keep it as a value-less record.
		d.out = append(d.out, Record{Path: p, Value: Value{}})
		return nil
	}
	ris := map[uint16]bool{}
	return eachTLV(d.payload, t.lo, t.hi, func(ri tlv) error {
		if ri.typ != tlvResourceInstance {
			return fmt.Errorf("tlv: %s TLV at offset %d inside multiple resource %s: %w", tlvTypeName(ri.typ), ri.off, p, ErrMalformed)
		}
		return d.resourceInstance(p, ri, ris)
	})
}

func (d *tlvDecoder) resourceInstance(res Path, t tlv, seen map[uint16]bool) error {
	if seen[t.id] {
		return fmt.Errorf("tlv: duplicate resource instance %d of %s at offset %d: %w", t.id, res, t.off, ErrMalformed)
	}
	seen[t.id] = true
	p := res.Child(t.id)
	v, err := d.value(p, t)
	if err != nil {
		return err
	}
	d.out = append(d.out, Record{Path: p, Value: v})
	return nil
}

// value decodes t's bytes by the model kind of p; without one the bytes are
// kept as Opaque, since TLV carries no type and guessing could mislead.
func (d *tlvDecoder) value(p Path, t tlv) (Value, error) {
	b := d.payload[t.lo:t.hi]
	k, ok := modelKind(d.m, p)
	if !ok {
		return OpaqueValue(b), nil
	}
	bad := func(want string) (Value, error) {
		return Value{}, fmt.Errorf("tlv: %s %s value at offset %d has %d bytes, want %s: %w", p, k, t.off, len(b), want, ErrMalformed)
	}
	switch k {
	case KindString:
		if !utf8.Valid(b) {
			return Value{}, fmt.Errorf("tlv: %s string at offset %d is not valid UTF-8: %w", p, t.off, ErrMalformed)
		}
		return StringValue(string(b)), nil
	case KindOpaque:
		return OpaqueValue(b), nil
	case KindInteger, KindTime:
		var i int64
		switch len(b) {
		case 1:
			i = int64(int8(b[0]))
		case 2:
			i = int64(int16(binary.BigEndian.Uint16(b)))
		case 4:
			i = int64(int32(binary.BigEndian.Uint32(b)))
		case 8:
			i = int64(binary.BigEndian.Uint64(b))
		default:
			return bad("1, 2, 4 or 8")
		}
		return Value{kind: k, bits: uint64(i)}, nil
	case KindUnsigned:
		switch len(b) {
		case 1:
			return UnsignedValue(uint64(b[0])), nil
		case 2:
			return UnsignedValue(uint64(binary.BigEndian.Uint16(b))), nil
		case 4:
			return UnsignedValue(uint64(binary.BigEndian.Uint32(b))), nil
		case 8:
			return UnsignedValue(binary.BigEndian.Uint64(b)), nil
		}
		return bad("1, 2, 4 or 8")
	case KindFloat:
		switch len(b) {
		case 4:
			return FloatValue(float64(math.Float32frombits(binary.BigEndian.Uint32(b)))), nil
		case 8:
			return FloatValue(math.Float64frombits(binary.BigEndian.Uint64(b))), nil
		}
		return bad("4 or 8")
	case KindBoolean:
		if len(b) != 1 {
			return bad("1")
		}
		if b[0] > 1 {
			return Value{}, fmt.Errorf("tlv: %s boolean at offset %d is %d, want 0 or 1: %w", p, t.off, b[0], ErrMalformed)
		}
		return BooleanValue(b[0] == 1), nil
	case KindObjLink:
		if len(b) != 4 {
			return bad("4")
		}
		return ObjLinkValue(binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])), nil
	}
	return OpaqueValue(b), nil
}

// appendTLV appends one TLV header and value using the shortest id and
// length encodings.
func appendTLV(b []byte, typ byte, id uint16, value []byte) ([]byte, error) {
	n := len(value)
	if n > maxTLVLength {
		return nil, fmt.Errorf("tlv: value of %d bytes exceeds the 24-bit length limit %d: %w", n, maxTLVLength, ErrKindMismatch)
	}
	t := typ << 6
	if id > 0xFF {
		t |= 0x20
	}
	var lenBytes int
	switch {
	case n <= 7:
		t |= byte(n)
	case n <= 0xFF:
		t |= 0x08
		lenBytes = 1
	case n <= 0xFFFF:
		t |= 0x10
		lenBytes = 2
	default:
		t |= 0x18
		lenBytes = 3
	}
	b = append(b, t)
	if id > 0xFF {
		b = binary.BigEndian.AppendUint16(b, id)
	} else {
		b = append(b, byte(id))
	}
	for i := lenBytes - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return append(b, value...), nil
}

// tlvValue returns the TLV value bytes: shortest integer width, float32
// when exact, else float64.
func tlvValue(p Path, v Value) ([]byte, error) {
	switch v.kind {
	case KindString:
		if !utf8.ValidString(v.str) {
			return nil, fmt.Errorf("tlv: %s: string is not valid UTF-8: %w", p, ErrKindMismatch)
		}
		return []byte(v.str), nil
	case KindOpaque:
		return []byte(v.str), nil
	case KindInteger, KindTime:
		i := int64(v.bits)
		switch {
		case i == int64(int8(i)):
			return []byte{byte(i)}, nil
		case i == int64(int16(i)):
			return binary.BigEndian.AppendUint16(nil, uint16(i)), nil
		case i == int64(int32(i)):
			return binary.BigEndian.AppendUint32(nil, uint32(i)), nil
		}
		return binary.BigEndian.AppendUint64(nil, uint64(i)), nil
	case KindUnsigned:
		u := v.bits
		switch {
		case u <= math.MaxUint8:
			return []byte{byte(u)}, nil
		case u <= math.MaxUint16:
			return binary.BigEndian.AppendUint16(nil, uint16(u)), nil
		case u <= math.MaxUint32:
			return binary.BigEndian.AppendUint32(nil, uint32(u)), nil
		}
		return binary.BigEndian.AppendUint64(nil, u), nil
	case KindFloat:
		f := v.Float()
		if f32 := float32(f); float64(f32) == f {
			return binary.BigEndian.AppendUint32(nil, math.Float32bits(f32)), nil
		}
		return binary.BigEndian.AppendUint64(nil, v.bits), nil
	case KindBoolean:
		return []byte{byte(v.bits)}, nil
	case KindObjLink:
		return binary.BigEndian.AppendUint32(nil, uint32(v.bits)), nil
	}
	return nil, fmt.Errorf("tlv: %s: a %s record has no value to encode here: %w", p, v.kind, ErrKindMismatch)
}

// Encoding groups records into the TLV tree, in order of first appearance.
type tlvResNode struct {
	id     uint16
	single bool  // a single-instance value is set
	multi  bool  // multiple resource (possibly empty)
	value  Value // when single
	insts  []tlvRINode
	seen   map[uint16]bool
}

type tlvRINode struct {
	id    uint16
	value Value
}

type tlvInstNode struct {
	id   uint16
	res  []*tlvResNode
	byID map[uint16]*tlvResNode
}

func encodeTLV(base Path, records []Record) ([]byte, error) {
	depth := base.Depth()
	if depth == 0 {
		return nil, fmt.Errorf("tlv: base path / cannot be used: TLV carries no object id: %w", ErrInvalidPath)
	}
	var insts []*tlvInstNode
	byID := map[uint16]*tlvInstNode{}
	for _, r := range records {
		p := r.Path
		if p.Depth() < 2 {
			return nil, fmt.Errorf("tlv: record %s: an object-level record has no TLV form: %w", p, ErrInvalidPath)
		}
		inst := byID[uint16(p.Instance)]
		if inst == nil {
			inst = &tlvInstNode{id: uint16(p.Instance), byID: map[uint16]*tlvResNode{}}
			byID[inst.id] = inst
			insts = append(insts, inst)
		}
		if p.Depth() == 2 {
			if r.Value.kind != KindNone {
				return nil, fmt.Errorf("tlv: record %s: an object instance cannot hold a %s value: %w", p, r.Value.kind, ErrKindMismatch)
			}
			continue
		}
		res := inst.byID[uint16(p.Resource)]
		if res == nil {
			res = &tlvResNode{id: uint16(p.Resource)}
			inst.byID[res.id] = res
			inst.res = append(inst.res, res)
		}
		if p.Depth() == 3 {
			if res.single || (res.multi && r.Value.kind != KindNone) {
				return nil, fmt.Errorf("tlv: record %s: resource given twice: %w", p, ErrInvalidPath)
			}
			if r.Value.kind == KindNone {
				res.multi = true // empty multiple resource
				continue
			}
			res.single, res.value = true, r.Value
			continue
		}
		if res.single {
			return nil, fmt.Errorf("tlv: record %s: resource %d is both single and multiple: %w", p, res.id, ErrInvalidPath)
		}
		if res.seen == nil {
			res.seen = map[uint16]bool{}
		}
		ri := uint16(p.ResourceInstance)
		if res.seen[ri] {
			return nil, fmt.Errorf("tlv: record %s: resource instance given twice: %w", p, ErrInvalidPath)
		}
		res.seen[ri] = true
		res.multi = true
		res.insts = append(res.insts, tlvRINode{id: ri, value: r.Value})
	}

	instPath := func(inst *tlvInstNode) Path { return NewPath(uint16(base.Object), inst.id) }
	var out []byte
	var err error
	switch depth {
	case 1:
		for _, inst := range insts {
			body, err := encodeTLVResources(instPath(inst), inst.res)
			if err != nil {
				return nil, err
			}
			if out, err = appendTLV(out, tlvObjectInstance, inst.id, body); err != nil {
				return nil, err
			}
		}
	case 2, 3:
		// All records lie under base, so there is at most one instance
		// (and, for depth 3, one resource).
		for _, inst := range insts {
			if out, err = encodeTLVResources(instPath(inst), inst.res); err != nil {
				return nil, err
			}
		}
	case 4:
		for _, inst := range insts {
			for _, res := range inst.res {
				for _, ri := range res.insts {
					p := instPath(inst).Child(res.id).Child(ri.id)
					val, err := tlvValue(p, ri.value)
					if err != nil {
						return nil, err
					}
					if out, err = appendTLV(out, tlvResourceInstance, ri.id, val); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

func encodeTLVResources(inst Path, resources []*tlvResNode) ([]byte, error) {
	var out []byte
	for _, res := range resources {
		p := inst.Child(res.id)
		var err error
		if res.single {
			val, err := tlvValue(p, res.value)
			if err != nil {
				return nil, err
			}
			if out, err = appendTLV(out, tlvResource, res.id, val); err != nil {
				return nil, err
			}
			continue
		}
		var body []byte
		for _, ri := range res.insts {
			val, err := tlvValue(p.Child(ri.id), ri.value)
			if err != nil {
				return nil, err
			}
			if body, err = appendTLV(body, tlvResourceInstance, ri.id, val); err != nil {
				return nil, err
			}
		}
		if out, err = appendTLV(out, tlvMultipleResource, res.id, body); err != nil {
			return nil, err
		}
	}
	return out, nil
}
