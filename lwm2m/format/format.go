// Package format converts LwM2M payloads to and from typed records.
//
// It covers the content formats an LwM2M 1.0/1.1 server meets on the wire:
// text/plain, application/octet-stream, application/link-format (RFC 6690),
// application/vnd.oma.lwm2m+tlv, application/vnd.oma.lwm2m+json (LwM2M 1.0
// JSON), application/senml+json and application/senml+cbor (RFC 8428 as
// profiled by LwM2M 1.1). It is pure data conversion: no networking, no CoAP.
//
// Decoders never panic on hostile input, check every length field against the
// bytes that remain before allocating, and bound nesting. Every error wraps
// one of the sentinel errors below, so callers can map them to CoAP codes
// with errors.Is while the message still says what was wrong and where.
package format

import (
	"errors"
	"fmt"
)

// CoAP Content-Format numbers of the supported LwM2M data formats.
const (
	FormatText       uint16 = 0     // text/plain;charset=utf-8
	FormatLinkFormat uint16 = 40    // application/link-format
	FormatOpaque     uint16 = 42    // application/octet-stream
	FormatSenMLJSON  uint16 = 110   // application/senml+json
	FormatSenMLCBOR  uint16 = 112   // application/senml+cbor
	FormatTLV        uint16 = 11542 // application/vnd.oma.lwm2m+tlv
	FormatLwM2MJSON  uint16 = 11543 // application/vnd.oma.lwm2m+json

	// Pre-standard numbers still sent by LwM2M 1.0 era clients.
	FormatTLVLegacy       uint16 = 1542
	FormatLwM2MJSONLegacy uint16 = 1543
)

// Sentinel errors; every error returned by this package wraps one of them.
var (
	// ErrMalformed reports a payload that does not follow its format.
	ErrMalformed = errors.New("malformed payload")
	// ErrUnsupportedFormat reports a content format (or a feature of one)
	// this package does not handle.
	ErrUnsupportedFormat = errors.New("unsupported content format")
	// ErrInvalidPath reports a bad LwM2M path, or a path that does not fit
	// the request's base path.
	ErrInvalidPath = errors.New("invalid path")
	// ErrKindMismatch reports a value whose kind cannot be represented in
	// the requested format or converted to the kind the model requires.
	ErrKindMismatch = errors.New("value kind mismatch")
)

// Record is one LwM2M value addressed by its full path.
//
// A Record whose Value has KindNone names a node without carrying a value:
// the entries of a SenML Read-Composite request, or an empty object instance
// or multiple resource in TLV.
type Record struct {
	Path  Path  `json:"path"`
	Value Value `json:"value"`
	// Time is the SenML/LwM2M-JSON time of the value in seconds (bt+t),
	// 0 when absent. Per RFC 8428 §4.5.3 values below 2^28 are relative to
	// the time the pack was produced; it is kept as sent because only the
	// caller knows "now".
	Time float64 `json:"time,omitempty"`
}

// Decode parses payload, sent in contentFormat in answer to (or as the body
// of) a request on base, into records with full paths.
//
// m gives the resource kinds that TLV, text and opaque payloads do not carry
// and refines numeric JSON/CBOR values; it may be nil.
func Decode(contentFormat uint16, base Path, payload []byte, m Model) ([]Record, error) {
	if err := base.validate(); err != nil {
		return nil, fmt.Errorf("decode: base path: %w", err)
	}
	if m == nil {
		m = noModel{}
	}
	switch contentFormat {
	case FormatText:
		return decodeText(base, payload, m)
	case FormatOpaque:
		return decodeOpaque(base, payload)
	case FormatTLV, FormatTLVLegacy:
		return decodeTLV(base, payload, m)
	case FormatLwM2MJSON, FormatLwM2MJSONLegacy:
		return decodeLwM2MJSON(base, payload, m)
	case FormatSenMLJSON:
		return decodeSenMLJSON(base, payload, m)
	case FormatSenMLCBOR:
		return decodeSenMLCBOR(base, payload, m)
	case FormatLinkFormat:
		return nil, fmt.Errorf("decode: content format 40 (link-format) carries links, not values; use ParseLinks: %w", ErrUnsupportedFormat)
	default:
		return nil, fmt.Errorf("decode: content format %d: %w", contentFormat, ErrUnsupportedFormat)
	}
}

// Encode serialises records, which must all lie at or below base, in
// contentFormat for a request on (or a response about) base.
//
// A record whose kind the format cannot carry is an error (ErrKindMismatch),
// never silently converted.
func Encode(contentFormat uint16, base Path, records []Record) ([]byte, error) {
	if err := base.validate(); err != nil {
		return nil, fmt.Errorf("encode: base path: %w", err)
	}
	for i, r := range records {
		if err := r.Path.validate(); err != nil {
			return nil, fmt.Errorf("encode: record %d: %w", i, err)
		}
		if !base.Contains(r.Path) {
			return nil, fmt.Errorf("encode: record %d path %s is not under base %s: %w", i, r.Path, base, ErrInvalidPath)
		}
	}
	switch contentFormat {
	case FormatText:
		return encodeText(base, records)
	case FormatOpaque:
		return encodeOpaque(base, records)
	case FormatTLV, FormatTLVLegacy:
		return encodeTLV(base, records)
	case FormatLwM2MJSON, FormatLwM2MJSONLegacy:
		return encodeLwM2MJSON(base, records)
	case FormatSenMLJSON:
		return encodeSenMLJSON(base, records)
	case FormatSenMLCBOR:
		return encodeSenMLCBOR(base, records)
	case FormatLinkFormat:
		return nil, fmt.Errorf("encode: content format 40 (link-format) carries links, not values; use FormatLinks: %w", ErrUnsupportedFormat)
	default:
		return nil, fmt.Errorf("encode: content format %d: %w", contentFormat, ErrUnsupportedFormat)
	}
}
