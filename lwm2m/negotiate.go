package lwm2m

import (
	"strings"

	"github.com/iotgate/iotgate/lwm2m/format"
)

// Content-format negotiation: which format the server asks for when the
// application names none, and which it writes in. The client's side is
// what it declared at Register or Update (ct on its root link, LwM2M 1.1
// TS Core §6.2.1) plus what its LwM2M version makes mandatory.
//
// The rules, as the README states them:
//   - One value (a resource instance, or a resource the object model knows
//     to be single-instance) is read and written as text/plain, or
//     application/octet-stream for an Opaque resource: every client takes
//     these for single values (LwM2M 1.0 §6.4.1; mandatory in 1.1).
//   - Anything else is read and written in the first format of
//     structuredPreference the client supports.
//   - A client that declared none of them gets TLV, LwM2M 1.0's mandatory
//     format; a 1.0 client has TLV whatever it declared.

// structuredPreference lists the formats that carry any number of values,
// most preferred first: SenML is LwM2M 1.1's own format (paths, resource
// instances and timestamps; what composite operations and Send use), its
// CBOR form the smallest on the air; TLV is as small but optional since
// 1.1; LwM2M JSON is deprecated.
var structuredPreference = [...]uint16{format.FormatSenMLCBOR, format.FormatSenMLJSON, format.FormatTLV, format.FormatLwM2MJSON}

// supportedFormats is what the client of r can be asked for: what it
// declared, plus TLV for an LwM2M 1.0 client, for which it is mandatory.
func (r *Registration) supportedFormats() format.Set {
	s := r.Formats
	if isLwM2M10(r.Version) {
		s |= format.SetOf(format.FormatTLV)
	}
	return s
}

// isLwM2M10 reports whether the lwm2m parameter of a Register names 1.0
// (1.0 clients may leave it out).
func isLwM2M10(v string) bool { return v == "" || v == "1.0" || strings.HasPrefix(v, "1.0.") }

// structuredFormat is the format for several values to or from r's client.
func (r *Registration) structuredFormat() uint16 {
	s := r.supportedFormats()
	for _, f := range structuredPreference {
		if s.Has(f) {
			return f
		}
	}
	return format.FormatTLV
}

// singleValueFormat is the format of one value of kind k.
func singleValueFormat(k format.Kind) uint16 {
	if k == format.KindOpaque {
		return format.FormatOpaque
	}
	return format.FormatText
}

// readFormat is the Accept of a Read or Observe of p the application
// asked no format for.
func (r *Registration) readFormat(p format.Path) uint16 {
	if !format.SingleValue(p) {
		return r.structuredFormat()
	}
	k, _ := format.DefaultModel().Kind(p.Object, p.Resource)
	return singleValueFormat(k)
}

// writeFormat is the Content-Format of a Write or Create of recs on p the
// application asked no format for.
func (r *Registration) writeFormat(p format.Path, recs []format.Record) uint16 {
	if len(recs) == 1 && recs[0].Path == p && p.Depth() >= 3 {
		return singleValueFormat(recs[0].Value.Kind())
	}
	return r.structuredFormat()
}
