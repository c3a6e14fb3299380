package registry

import (
	"encoding/binary"
	"errors"
	"time"
)

// The binary record forms (device records, device event bodies) share
// these primitives: a string or byte field is a uvarint length and its
// bytes, a number a (u)varint, a time its Unix nanoseconds.

var errBinShort = errors.New("binary record cut short")

func appendBinString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBinBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// binReader reads a binary form; the first error sticks.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBinShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBinShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next field, aliasing the input.
func (r *binReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errBinShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// copied returns the next field as a fresh slice, nil when empty.
func (r *binReader) copied() []byte {
	if v := r.bytes(); len(v) > 0 {
		return append([]byte(nil), v...)
	}
	return nil
}

func (r *binReader) string() string { return string(r.bytes()) }

func (r *binReader) byte() byte {
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
func (r *binReader) fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = errBinShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// count reads an element count, refusing one the rest of the input
// cannot hold at min bytes an element (a corrupt count must not size an
// allocation).
func (r *binReader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = errBinShort
		return 0
	}
	return int(n)
}

// appendBinTime appends t as Unix seconds and nanoseconds: exact for any
// time, read back in UTC.
func appendBinTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func (r *binReader) time() time.Time {
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
