package registry

import (
	"encoding/binary"
	"fmt"
)

// A device create, update or delete event is stored with its body in
// binary (eventBodyBinary) rather than as JSON: every REST create writes
// one, and its JSON (field names, the device id three times) was as large
// as the device record itself, which the create's CPU follows
// (BENCHMARKS.md run 27). Reading turns it back into the JSON the body
// would have been, byte for byte (appendJSON of the same values).
//
// Layout: resource and event, then the body's strings in field order,
// each a uvarint length and its bytes, with the project and, when they
// equal the device id, the gateway id left out (flags say which); then
// the auth flags, the timeout, the extension info and the tags.

const (
	binAppIsProject  = 1 << iota // app_id is the record's project
	binGatewayIsSelf             // gateway_id is device_id
	binSecureAccess
	binTimeoutSet
	binTagsNil // tags null rather than []
)

// appendDeviceBodyBinary appends rec, whose body is a *deviceEventBody,
// in the binary form.
func appendDeviceBodyBinary(b []byte, project string, rec *eventRecord, d *deviceEventBody) []byte {
	var flags byte
	if d.AppID == project {
		flags |= binAppIsProject
	}
	if d.GatewayID == d.DeviceID {
		flags |= binGatewayIsSelf
	}
	if d.AuthInfo.SecureAccess {
		flags |= binSecureAccess
	}
	if d.AuthInfo.Timeout != nil {
		flags |= binTimeoutSet
	}
	if d.Tags == nil {
		flags |= binTagsNil
	}
	b = appendBin(b, rec.Resource)
	b = appendBin(b, rec.Event)
	b = append(b, flags)
	if flags&binAppIsProject == 0 {
		b = appendBin(b, d.AppID)
	}
	b = appendBin(b, d.DeviceID)
	b = appendBin(b, d.NodeID)
	if flags&binGatewayIsSelf == 0 {
		b = appendBin(b, d.GatewayID)
	}
	for _, s := range []string{d.DeviceName, d.Description, d.ProductID, string(d.Status), d.CreateTime, d.ActiveTime,
		string(d.AuthInfo.AuthType)} {
		b = appendBin(b, s)
	}
	if d.AuthInfo.Timeout != nil {
		b = binary.AppendVarint(b, *d.AuthInfo.Timeout)
	}
	b = appendBin(b, []byte(d.ExtensionInfo))
	b = binary.AppendUvarint(b, uint64(len(d.Tags)))
	for _, t := range d.Tags {
		b = appendBin(b, t.Key)
		b = appendBin(b, t.Value)
	}
	return b
}

// decodeDeviceBodyBinary reads the binary form: the resource, the event
// and the body.
func decodeDeviceBodyBinary(project string, b []byte) (resource, event string, d *deviceEventBody, err error) {
	r := &binReader[[]byte]{b: b}
	resource, event = r.string(), r.string()
	flags := r.byte()
	d = &deviceEventBody{AppID: project}
	if flags&binAppIsProject == 0 {
		d.AppID = r.string()
	}
	d.DeviceID, d.NodeID = r.string(), r.string()
	d.GatewayID = d.DeviceID
	if flags&binGatewayIsSelf == 0 {
		d.GatewayID = r.string()
	}
	d.DeviceName, d.Description, d.ProductID = r.string(), r.string(), r.string()
	d.Status, d.CreateTime, d.ActiveTime = Status(r.string()), r.string(), r.string()
	d.AuthInfo.AuthType = AuthType(r.string())
	d.AuthInfo.SecureAccess = flags&binSecureAccess != 0
	if flags&binTimeoutSet != 0 {
		v := r.varint()
		d.AuthInfo.Timeout = &v
	}
	d.ExtensionInfo = r.copied()
	n := r.count(2) // a tag takes at least 2 bytes
	if flags&binTagsNil == 0 {
		d.Tags = make([]EventTag, 0, n)
	}
	for range n {
		if r.err != nil {
			break
		}
		d.Tags = append(d.Tags, EventTag{Key: r.string(), Value: r.string()})
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the binary event body", len(r.b))
	}
	if r.err != nil {
		return "", "", nil, r.err
	}
	return resource, event, d, nil
}
