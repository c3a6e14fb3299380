package lwm2m

import (
	"testing"

	"github.com/iotgate/iotgate/lwm2m/format"
)

// TestLwM2MNegotiateFormats: for each set of declared formats and LwM2M
// version, the format asked for when reading, and written in, with no
// format from the application.
func TestLwM2MNegotiateFormats(t *testing.T) {
	const (
		text  = format.FormatText
		opq   = format.FormatOpaque
		tlv   = format.FormatTLV
		sjson = format.FormatSenMLJSON
		scbor = format.FormatSenMLCBOR
		ljson = format.FormatLwM2MJSON
	)
	var (
		object        = format.NewPath(3)
		instance      = format.NewPath(3, 0)
		single        = format.NewPath(3, 0, 0)       // Manufacturer
		multiple      = format.NewPath(3, 0, 6)       // Available Power Sources
		resInstance   = format.NewPath(3, 0, 6, 1)    // one of them
		opaqueRes     = format.NewPath(5, 0, 0)       // Package
		unknownRes    = format.NewPath(3303, 0, 5700) // not in the model
		unknownObject = format.NewPath(3303, 0)
	)
	for _, tc := range []struct {
		name     string
		version  string
		declared string // a ct value; "" declares none
		// the Accept of a Read of object, instance, single, multiple,
		// resInstance, opaqueRes, unknownRes
		read [7]uint16
		// the Content-Format of a Write of several values
		writeMany uint16
	}{
		{"1.0, nothing declared", "1.0", "", [7]uint16{tlv, tlv, text, tlv, text, opq, tlv}, tlv},
		{"no version (1.0)", "", "", [7]uint16{tlv, tlv, text, tlv, text, opq, tlv}, tlv},
		{"1.1, nothing declared", "1.1", "", [7]uint16{tlv, tlv, text, tlv, text, opq, tlv}, tlv},
		{"1.1, SenML JSON only (Wakaama)", "1.1", "110", [7]uint16{sjson, sjson, text, sjson, text, opq, sjson}, sjson},
		{"1.1, SenML CBOR only", "1.1", "112", [7]uint16{scbor, scbor, text, scbor, text, opq, scbor}, scbor},
		{"1.1, both SenML", "1.1", "110 112", [7]uint16{scbor, scbor, text, scbor, text, opq, scbor}, scbor},
		{"1.1, TLV and SenML JSON", "1.1.1", "11542 110", [7]uint16{sjson, sjson, text, sjson, text, opq, sjson}, sjson},
		{"1.1, all and unknown ones", "1.1", "60 110 112 11542 11543 11544", [7]uint16{scbor, scbor, text, scbor, text, opq, scbor}, scbor},
		{"1.1, LwM2M JSON only", "1.1", "11543", [7]uint16{ljson, ljson, text, ljson, text, opq, ljson}, ljson},
		{"1.0, LwM2M JSON declared: TLV is mandatory", "1.0.2", "11543", [7]uint16{tlv, tlv, text, tlv, text, opq, tlv}, tlv},
		{"1.0, legacy LwM2M JSON number", "1.0", "1543", [7]uint16{tlv, tlv, text, tlv, text, opq, tlv}, tlv},
		{"1.1, only formats nothing here speaks", "1.1", "60 11544", [7]uint16{tlv, tlv, text, tlv, text, opq, tlv}, tlv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Registration{Version: tc.version}
			if tc.declared != "" {
				var err error
				if r.Formats, err = format.ParseContentFormats(tc.declared); err != nil {
					t.Fatal(err)
				}
			}
			for i, p := range []format.Path{object, instance, single, multiple, resInstance, opaqueRes, unknownRes} {
				if got := r.readFormat(p); got != tc.read[i] {
					t.Errorf("read %s: Accept %d, want %d", p, got, tc.read[i])
				}
			}
			many := []format.Record{
				{Path: format.NewPath(3303, 0, 5700), Value: format.FloatValue(1.5)},
				{Path: format.NewPath(3303, 0, 5701), Value: format.StringValue("Cel")},
			}
			if got := r.writeFormat(unknownObject, many); got != tc.writeMany {
				t.Errorf("write of two values: %d, want %d", got, tc.writeMany)
			}
			// One value at its own path is text, or opaque for an Opaque
			// value, whatever the client declared.
			if got := r.writeFormat(single, []format.Record{{Path: single, Value: format.StringValue("x")}}); got != text {
				t.Errorf("write of one string: %d, want text", got)
			}
			if got := r.writeFormat(opaqueRes, []format.Record{{Path: opaqueRes, Value: format.OpaqueValue([]byte{1})}}); got != opq {
				t.Errorf("write of one opaque value: %d, want opaque", got)
			}
			// One value below the path (a Write on an instance) is
			// several in form: the payload must name its resource.
			one := []format.Record{{Path: format.NewPath(3303, 0, 5700), Value: format.FloatValue(1.5)}}
			if got := r.writeFormat(unknownObject, one); got != tc.writeMany {
				t.Errorf("write of one value on an instance: %d, want %d", got, tc.writeMany)
			}
			// And what is picked encodes.
			ct, b, err := (&Operation{Name: OpWrite, Path: unknownObject, Records: many}).body(r)
			if err != nil || ct != tc.writeMany || len(b) == 0 {
				t.Fatalf("body: %d %q %v", ct, b, err)
			}
			if _, err := format.Decode(ct, unknownObject, b, nil); err != nil {
				t.Fatalf("the body does not decode: %v", err)
			}
		})
	}
}
