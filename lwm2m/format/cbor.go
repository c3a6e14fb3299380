package format

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// The CBOR subset (RFC 8949) SenML needs: integers, byte and text strings
// (definite or chunked), arrays and maps (definite or indefinite), floats
// of all three widths, false/true/null. Tags are refused: SenML does not
// use them and a generic tag walker is attack surface for nothing.

// CBOR major types.
const (
	cborUint   = 0
	cborNegint = 1
	cborBytes  = 2
	cborText   = 3
	cborArray  = 4
	cborMap    = 5
	cborTag    = 6
	cborSimple = 7
)

// cborMaxDepth bounds nesting of skipped unknown values; SenML itself needs 2.
const cborMaxDepth = 16

const cborBreak = 0xff

func cborMajorName(m byte) string {
	return [...]string{"unsigned integer", "negative integer", "byte string", "text string", "array", "map", "tag", "simple/float"}[m&7]
}

type cborReader struct {
	format string
	b      []byte
	off    int
}

func (r *cborReader) errorf(off int, format string, args ...any) error {
	return fmt.Errorf("%s: %s at offset %d: %w", r.format, fmt.Sprintf(format, args...), off, ErrMalformed)
}

// cborHead is a decoded initial byte and argument.
type cborHead struct {
	major      byte
	info       byte   // additional information (low 5 bits)
	arg        uint64 // argument; unused when indefinite
	indefinite bool
	off        int // offset of the initial byte
}

func (r *cborReader) head() (cborHead, error) {
	h := cborHead{off: r.off}
	if r.off >= len(r.b) {
		return h, r.errorf(r.off, "unexpected end of input")
	}
	ib := r.b[r.off]
	r.off++
	h.major, h.info = ib>>5, ib&0x1f
	switch {
	case h.info < 24:
		h.arg = uint64(h.info)
	case h.info <= 27:
		n := 1 << (h.info - 24)
		if len(r.b)-r.off < n {
			return h, r.errorf(h.off, "argument needs %d bytes, %d remain", n, len(r.b)-r.off)
		}
		for i := 0; i < n; i++ {
			h.arg = h.arg<<8 | uint64(r.b[r.off+i])
		}
		r.off += n
	case h.info == 31:
		switch h.major {
		case cborBytes, cborText, cborArray, cborMap:
			h.indefinite = true
		case cborSimple:
			return h, r.errorf(h.off, "unexpected break")
		default:
			return h, r.errorf(h.off, "indefinite length not allowed for %s", cborMajorName(h.major))
		}
	default:
		return h, r.errorf(h.off, "reserved additional information %d", h.info)
	}
	if h.major == cborTag {
		return h, fmt.Errorf("%s: tag %d at offset %d not supported: %w", r.format, h.arg, h.off, ErrUnsupportedFormat)
	}
	return h, nil
}

// atBreak consumes a break byte if one is next.
func (r *cborReader) atBreak() bool {
	if r.off < len(r.b) && r.b[r.off] == cborBreak {
		r.off++
		return true
	}
	return false
}

// more reports whether another item of a container opened by h follows,
// given i items read so far; for indefinite containers it eats the break.
func (r *cborReader) more(h cborHead, i uint64) bool {
	if h.indefinite {
		return !r.atBreak()
	}
	return i < h.arg
}

// stringBody reads the content of a byte or text string whose head is h.
func (r *cborReader) stringBody(h cborHead) ([]byte, error) {
	if !h.indefinite {
		if h.arg > uint64(len(r.b)-r.off) {
			return nil, r.errorf(h.off, "%s length %d exceeds remaining %d bytes", cborMajorName(h.major), h.arg, len(r.b)-r.off)
		}
		s := r.b[r.off : r.off+int(h.arg)]
		r.off += int(h.arg)
		if h.major == cborText && !utf8.Valid(s) {
			return nil, r.errorf(h.off, "text string is not valid UTF-8")
		}
		return s, nil
	}
	// Chunked: definite strings of the same major type until break. The
	// result is bounded by the input size.
	var out []byte
	for !r.atBreak() {
		c, err := r.head()
		if err != nil {
			return nil, err
		}
		if c.major != h.major || c.indefinite {
			return nil, r.errorf(c.off, "chunk of indefinite %s is a %s", cborMajorName(h.major), cborMajorName(c.major))
		}
		s, err := r.stringBody(c)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// scalar reads one non-container item. It returns the item's head and, for
// strings, the content; containers are an error.
func (r *cborReader) scalar() (cborHead, []byte, error) {
	h, err := r.head()
	if err != nil {
		return h, nil, err
	}
	switch h.major {
	case cborBytes, cborText:
		s, err := r.stringBody(h)
		return h, s, err
	case cborArray, cborMap:
		return h, nil, r.errorf(h.off, "nested %s not supported here", cborMajorName(h.major))
	}
	return h, nil, nil
}

// skip skips one complete item of any type, bounded in depth.
func (r *cborReader) skip(depth int) error {
	if depth > cborMaxDepth {
		return r.errorf(r.off, "nesting deeper than %d", cborMaxDepth)
	}
	h, err := r.head()
	if err != nil {
		return err
	}
	switch h.major {
	case cborBytes, cborText:
		_, err := r.stringBody(h)
		return err
	case cborArray, cborMap:
		per := uint64(1)
		if h.major == cborMap {
			per = 2
		}
		for i := uint64(0); r.more(h, i); i++ {
			for j := uint64(0); j < per; j++ {
				if err := r.skip(depth + 1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// cborNumber interprets a scalar head as a number: integers stay exact,
// floats of any width become float64.
func (r *cborReader) number(h cborHead) (Value, float64, bool, error) {
	switch h.major {
	case cborUint:
		if h.arg > math.MaxInt64 {
			return UnsignedValue(h.arg), float64(h.arg), true, nil
		}
		return IntegerValue(int64(h.arg)), float64(h.arg), true, nil
	case cborNegint:
		if h.arg > math.MaxInt64 {
			return Value{}, 0, true, r.errorf(h.off, "negative integer -1-%d is below the int64 range", h.arg)
		}
		i := -1 - int64(h.arg)
		return IntegerValue(i), float64(i), true, nil
	case cborSimple:
		var f float64
		switch h.info {
		case 25:
			f = halfToFloat64(uint16(h.arg))
		case 26:
			f = float64(math.Float32frombits(uint32(h.arg)))
		case 27:
			f = math.Float64frombits(h.arg)
		default:
			return Value{}, 0, false, nil
		}
		return FloatValue(f), f, true, nil
	}
	return Value{}, 0, false, nil
}

// halfToFloat64 decodes an IEEE 754 half-precision float (RFC 8949 D).
func halfToFloat64(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var f float64
	switch exp {
	case 0:
		f = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			f = math.Inf(1)
		} else {
			f = math.NaN()
		}
	default:
		f = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		return -f
	}
	return f
}

// CBOR encoding helpers: shortest heads, definite lengths.

func cborAppendHead(b []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(b, m|byte(arg))
	case arg <= math.MaxUint8:
		return append(b, m|24, byte(arg))
	case arg <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(arg))
	case arg <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(arg))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), arg)
}

func cborAppendInt(b []byte, i int64) []byte {
	if i < 0 {
		return cborAppendHead(b, cborNegint, uint64(-1-i))
	}
	return cborAppendHead(b, cborUint, uint64(i))
}

func cborAppendText(b []byte, s string) []byte {
	return append(cborAppendHead(b, cborText, uint64(len(s))), s...)
}

func cborAppendBytes(b []byte, s string) []byte {
	return append(cborAppendHead(b, cborBytes, uint64(len(s))), s...)
}

// cborAppendFloat uses single precision when exact, else double; NaN goes
// out as double to keep its bits.
func cborAppendFloat(b []byte, f float64) []byte {
	if f32 := float32(f); float64(f32) == f {
		return binary.BigEndian.AppendUint32(append(b, cborSimple<<5|26), math.Float32bits(f32))
	}
	return binary.BigEndian.AppendUint64(append(b, cborSimple<<5|27), math.Float64bits(f))
}

func cborAppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xf5)
	}
	return append(b, 0xf4)
}
