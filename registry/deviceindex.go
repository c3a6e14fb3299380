package registry

import (
	"errors"

	"github.com/iotgate/iotgate/registry/kv"
)

// What a device owns in the store besides its record. CreateDevice writes
// and deleteDevice removes the same lists, built by the functions below,
// so a delete leaves nothing a create wrote. Entries that can change
// after creation (the certificate fingerprints and the expiry deadline)
// are kept in step with the record by putDeviceRecord instead, on create
// and delete as on every change; messages, commands and status times are
// written later and removed by deleteDevice's other steps.

// deviceIndexes are the index entries a device owns: keys whose value is
// the device's id.
type deviceIndexes struct {
	keys [][]byte
	// nodes: keys[:nodes] resolve the device's node id, a value no other
	// device may hold there. A create checks they are free, and caches
	// them because a new device usually connects soon; the listings
	// (keyed by the device's sequence number) that follow need neither.
	nodes int
}

// ownedIndexes lists the index entries d owns. coap: d's product speaks
// CoAP, whose node ids (the LwM2M endpoint names) are unique
// platform-wide and have an index of their own.
func ownedIndexes(d *Device, coap bool) deviceIndexes {
	n := 3
	if coap {
		n++
	}
	if d.GatewayID != "" {
		n++
	}
	keys := make([][]byte, 0, n)
	keys = append(keys, productNodeKey(d.ProductID, d.NodeID))
	if coap {
		keys = append(keys, nodeKey(d.NodeID))
	}
	nodes := len(keys)
	keys = append(keys, projectDeviceKey(d.ProjectID, d.Seq), productDeviceKey(d.ProductID, d.Seq))
	if d.GatewayID != "" {
		keys = append(keys, gatewayDeviceKey(d.GatewayID, d.Seq))
	}
	return deviceIndexes{keys: keys, nodes: nodes}
}

// ownsNodeIndex reports whether the platform-wide node index points at
// d, which is so exactly when d's product speaks CoAP (another product's
// device with the same node id never has the entry).
func ownsNodeIndex(rd Reader, d *Device) (bool, error) {
	v, err := rd.Get(nodeKey(d.NodeID))
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(v) == d.DeviceID, nil
}

// writeIndexes sets every entry of idx to d's id.
func writeIndexes(w Writer, d *Device, idx deviceIndexes) error {
	for _, k := range idx.keys {
		if err := w.Set(k, []byte(d.DeviceID)); err != nil {
			return err
		}
	}
	return nil
}

// deleteIndexes removes every entry of idx.
func deleteIndexes(w Writer, idx deviceIndexes) error {
	for _, k := range idx.keys {
		if err := w.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// countDevice adds delta to every counter d counts in: its project's and
// its product's devices, and its gateway's sub-devices.
func countDevice(w Writer, d *Device, delta int64) error {
	if err := addCount(w, projectCountKey(d.ProjectID), delta); err != nil {
		return err
	}
	if err := addCount(w, productCountKey(d.ProductID), delta); err != nil {
		return err
	}
	if d.GatewayID != "" {
		return addCount(w, gatewayCountKey(d.GatewayID), delta)
	}
	return nil
}
