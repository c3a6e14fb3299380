package format

import (
	"fmt"
	"strconv"
	"strings"
)

// Set is a set of the content formats this package encodes and decodes,
// one bit each: what a registration keeps of the formats its client
// declared, at the size of a uint16. The zero Set is empty.
type Set uint16

// setBits lists the formats a Set can hold, in bit order. The pre-standard
// TLV and LwM2M JSON numbers count as their standard ones.
var setBits = [...]uint16{FormatText, FormatLinkFormat, FormatOpaque, FormatSenMLJSON, FormatSenMLCBOR, FormatTLV, FormatLwM2MJSON}

func bitOf(ct uint16) Set {
	switch ct {
	case FormatTLVLegacy:
		ct = FormatTLV
	case FormatLwM2MJSONLegacy:
		ct = FormatLwM2MJSON
	}
	for i, f := range setBits {
		if f == ct {
			return 1 << i
		}
	}
	return 0
}

// SetOf returns the set of the given formats; formats this package does
// not handle are left out.
func SetOf(formats ...uint16) Set {
	var s Set
	for _, f := range formats {
		s |= bitOf(f)
	}
	return s
}

// Has reports whether ct is in s (a legacy TLV or LwM2M JSON number
// matches its standard one).
func (s Set) Has(ct uint16) bool {
	b := bitOf(ct)
	return b != 0 && s&b != 0
}

// Formats lists the members of s in ascending format number.
func (s Set) Formats() []uint16 {
	out := make([]uint16, 0, len(setBits))
	for i, f := range setBits {
		if s&(1<<i) != 0 {
			out = append(out, f)
		}
	}
	return out
}

// String renders s the way a ct attribute lists formats: "0 110 11542".
func (s Set) String() string {
	var b strings.Builder
	for i, f := range s.Formats() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(uint64(f), 10))
	}
	return b.String()
}

// maxDeclaredFormats bounds the ct attribute's list: there are a dozen
// LwM2M formats, a longer list is not a client's.
const maxDeclaredFormats = 32

// ParseContentFormats reads the value of a ct link attribute (RFC 7252
// §7.2.1 as LwM2M 1.1 TS Core §6.2.1 uses it on the root link of a
// Register): one Content-Format number, or several separated by spaces
// (quoted on the wire: ct="60 110 112 11542 11543"). Well-formed numbers
// of formats this package does not handle (60 CBOR, 11544 LwM2M CBOR) are
// left out of the Set, since nothing here could speak them; anything else
// is ErrMalformed.
func ParseContentFormats(v string) (Set, error) {
	fields := strings.Fields(v)
	if len(fields) == 0 {
		return 0, fmt.Errorf("ct: empty value: %w", ErrMalformed)
	}
	if len(fields) > maxDeclaredFormats {
		return 0, fmt.Errorf("ct: %d formats, at most %d: %w", len(fields), maxDeclaredFormats, ErrMalformed)
	}
	var s Set
	for _, f := range fields {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("ct: %q is not a content format number (0-65535): %w", f, ErrMalformed)
		}
		s |= bitOf(uint16(n))
	}
	return s, nil
}
