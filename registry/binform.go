package registry

import (
	"encoding/binary"
	"errors"
	"time"
)

// The binary record forms (device records, device event bodies) share
// these primitives: a string or byte field is a uvarint length and its
// bytes, a number a (u)varint, a time its Unix seconds and nanoseconds.

var errBinShort = errors.New("binary record cut short")

// appendBin appends a string or byte field: its length and its bytes.
func appendBin[S string | []byte](b []byte, v S) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendBinTime appends t as Unix seconds and nanoseconds: exact for any
// time, read back in UTC.
func appendBinTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// binReader reads a binary form from a []byte (a stored record) or a
// string (the cache's copy, whose string fields are then substrings of
// it: one allocation for the whole record). The first error sticks.
type binReader[T string | []byte] struct {
	b   T
	err error
}

// uvarint is binary.Uvarint over T.
func (r *binReader[T]) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < len(r.b) && i < binary.MaxVarintLen64; i++ {
		c := r.b[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break // overflows 64 bits
			}
			r.b = r.b[i+1:]
			return v | uint64(c)<<(7*i)
		}
		v |= uint64(c&0x7f) << (7 * i)
	}
	r.err = errBinShort
	return 0
}

// varint is binary.Varint over T (zig-zag).
func (r *binReader[T]) varint() int64 {
	u := r.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// bytes returns the next field, aliasing the input.
func (r *binReader[T]) bytes() T {
	n := r.uvarint()
	if r.err != nil {
		return r.b[:0]
	}
	if n > uint64(len(r.b)) {
		r.err = errBinShort
		return r.b[:0]
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// copied returns the next field as a fresh slice, nil when empty.
func (r *binReader[T]) copied() []byte {
	if v := r.bytes(); len(v) > 0 {
		return []byte(v)
	}
	return nil
}

// string returns the next field; a no-op conversion when T is string.
func (r *binReader[T]) string() string { return string(r.bytes()) }

func (r *binReader[T]) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errBinShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// fixed returns the next n bytes, aliasing the input.
func (r *binReader[T]) fixed(n int) T {
	if r.err != nil {
		return r.b[:0]
	}
	if n > len(r.b) {
		r.err = errBinShort
		return r.b[:0]
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// count reads an element count, refusing one the rest of the input
// cannot hold at min bytes an element (a corrupt count must not size an
// allocation).
func (r *binReader[T]) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = errBinShort
		return 0
	}
	return int(n)
}

func (r *binReader[T]) time() time.Time {
	sec := r.varint()
	nsec := r.uvarint()
	if r.err == nil && nsec >= 1e9 {
		r.err = errors.New("binary record: nanoseconds out of range")
	}
	if r.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}
