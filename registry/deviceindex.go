package registry

import "errors"

// What a device owns in the store besides its record. CreateDevice writes
// and deleteDevice removes the same lists, built by the functions below,
// so a delete leaves nothing a create wrote. Entries that can change
// after creation (the certificate fingerprints and the expiry deadline)
// are kept in step with the record by putDeviceRecord instead, on create
// and delete as on every change; messages, commands and status times are
// written later and removed by deleteDevice's other steps.

// indexEntry is an index key whose value is the owning device's id.
type indexEntry struct {
	key []byte
	// node: the entry resolves the device's node id, a value no other
	// device may hold there. A create checks it is free, and caches it
	// because a new device usually connects soon; the listings (keyed by
	// the device's sequence number) need neither.
	node bool
}

// ownedIndexes lists the index entries d owns. coap: d's product speaks
// CoAP, whose node ids (the LwM2M endpoint names) are unique
// platform-wide and have an index of their own.
func ownedIndexes(d *Device, coap bool) []indexEntry {
	idx := make([]indexEntry, 0, 5)
	idx = append(idx, indexEntry{key: productNodeKey(d.ProductID, d.NodeID), node: true})
	if coap {
		idx = append(idx, indexEntry{key: nodeKey(d.NodeID), node: true})
	}
	idx = append(idx,
		indexEntry{key: projectDeviceKey(d.ProjectID, d.Seq)},
		indexEntry{key: productDeviceKey(d.ProductID, d.Seq)})
	if d.GatewayID != "" {
		idx = append(idx, indexEntry{key: gatewayDeviceKey(d.GatewayID, d.Seq)})
	}
	return idx
}

// ownsNodeIndex reports whether the platform-wide node index points at
// d, which is so exactly when d's product speaks CoAP (another product's
// device with the same node id never has the entry).
func ownsNodeIndex(rd Reader, d *Device) (bool, error) {
	v, err := rd.Get(nodeKey(d.NodeID))
	if errors.Is(err, ErrNoKey) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(v) == d.DeviceID, nil
}

// writeIndexes sets every entry of idx to d's id.
func writeIndexes(w Writer, d *Device, idx []indexEntry) error {
	for _, e := range idx {
		if err := w.Set(e.key, []byte(d.DeviceID)); err != nil {
			return err
		}
	}
	return nil
}

// deleteIndexes removes every entry of idx.
func deleteIndexes(w Writer, idx []indexEntry) error {
	for _, e := range idx {
		if err := w.Delete(e.key); err != nil {
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
