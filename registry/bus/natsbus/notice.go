package natsbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// An invalidation notice on the wire, compact and binary-safe (keys are
// arbitrary byte strings):
//
//	kind     1 byte: noticeKeys or noticeDropAll
//	origin   uvarint length, then the publishing node's name
//	inc      uvarint: the publishing bus's incarnation (random per Open)
//	seq      uvarint: the message's number from that incarnation, 1, 2,
//	         ...: a receiver that sees a number skipped knows it missed
//	         a notice (or the sender lost one) and drops its cache
//	keys     (noticeKeys only) uvarint count, then each key as
//	         uvarint length and bytes
const (
	noticeKeys    byte = 1
	noticeDropAll byte = 2
)

// notice is a decoded invalidation notice: keys is nil for a drop-all.
type notice struct {
	origin   string
	inc, seq uint64
	keys     []string
}

var errBadNotice = errors.New("malformed invalidation notice")

// noticeSize bounds the encoded size of a keys notice from origin
// holding keys, given their encoded size (see keySize).
func noticeSize(origin string, keysSize, count int) int {
	return 1 + uvarintLen(len(origin)) + len(origin) + 2*binary.MaxVarintLen64 + uvarintLen(count) + keysSize
}

// keySize is what one key adds to a notice.
func keySize(k string) int { return uvarintLen(len(k)) + len(k) }

func uvarintLen(n int) int { // n >= 0
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// appendKeysNotice appends the encoding of a keys notice to dst.
func appendKeysNotice(dst []byte, origin string, inc, seq uint64, keys []string) []byte {
	dst = appendHeader(dst, noticeKeys, origin, inc, seq)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = appendString(dst, k)
	}
	return dst
}

// dropAllNotice encodes a drop-all from origin.
func dropAllNotice(origin string, inc, seq uint64) []byte {
	return appendHeader(nil, noticeDropAll, origin, inc, seq)
}

func appendHeader(dst []byte, kind byte, origin string, inc, seq uint64) []byte {
	dst = append(dst, kind)
	dst = appendString(dst, origin)
	dst = binary.AppendUvarint(dst, inc)
	return binary.AppendUvarint(dst, seq)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeNotice decodes a notice. Keys of a keys notice are non-nil, even
// when there are none, so that a nil keys slice always means drop-all.
func decodeNotice(b []byte) (notice, error) {
	if len(b) == 0 {
		return notice{}, fmt.Errorf("%w: empty", errBadNotice)
	}
	kind, rest := b[0], b[1:]
	origin, rest, err := readString(rest)
	if err != nil {
		return notice{}, fmt.Errorf("%w: origin: %v", errBadNotice, err)
	}
	inc, l := binary.Uvarint(rest)
	if l <= 0 {
		return notice{}, fmt.Errorf("%w: incarnation", errBadNotice)
	}
	rest = rest[l:]
	seq, l := binary.Uvarint(rest)
	if l <= 0 {
		return notice{}, fmt.Errorf("%w: sequence number", errBadNotice)
	}
	rest = rest[l:]
	switch kind {
	case noticeDropAll:
		if len(rest) != 0 {
			return notice{}, fmt.Errorf("%w: %d bytes after a drop-all", errBadNotice, len(rest))
		}
		return notice{origin: origin, inc: inc, seq: seq}, nil
	case noticeKeys:
	default:
		return notice{}, fmt.Errorf("%w: kind %d", errBadNotice, kind)
	}
	n, l := binary.Uvarint(rest)
	if l <= 0 {
		return notice{}, fmt.Errorf("%w: key count", errBadNotice)
	}
	rest = rest[l:]
	// Each key takes at least one byte: a count beyond what is left is a
	// lie, and must not size an allocation.
	if n > uint64(len(rest)) {
		return notice{}, fmt.Errorf("%w: %d keys in %d bytes", errBadNotice, n, len(rest))
	}
	keys := make([]string, 0, n)
	for i := uint64(0); i < n; i++ {
		var k string
		if k, rest, err = readString(rest); err != nil {
			return notice{}, fmt.Errorf("%w: key %d: %v", errBadNotice, i, err)
		}
		keys = append(keys, k)
	}
	if len(rest) != 0 {
		return notice{}, fmt.Errorf("%w: %d bytes after the keys", errBadNotice, len(rest))
	}
	return notice{origin: origin, inc: inc, seq: seq, keys: keys}, nil
}

func readString(b []byte) (string, []byte, error) {
	n, l := binary.Uvarint(b)
	if l <= 0 {
		return "", nil, errors.New("bad length")
	}
	b = b[l:]
	if n > uint64(len(b)) {
		return "", nil, fmt.Errorf("length %d beyond the %d bytes left", n, len(b))
	}
	return string(b[:n]), b[n:], nil
}
