package registry

import (
	"bytes"
	"fmt"
	"time"
)

// The steps of CreateDevice, in the order it takes them.

// newDevice validates n and makes the device it describes: defaults
// filled in, its deadline set if it has a timeout, its listing sequence
// number drawn.
func (r *Registry) newDevice(n NewDevice) (*Device, error) {
	now := r.now().UTC()
	d := &Device{
		ProjectID:     n.ProjectID,
		DeviceID:      n.DeviceID,
		NodeID:        n.NodeID,
		ProductID:     n.ProductID,
		GatewayID:     n.GatewayID,
		DeviceName:    n.DeviceName,
		Description:   n.Description,
		ExtensionInfo: n.ExtensionInfo,
		Auth:          n.Auth,
		Tags:          n.Tags,
		CreateTime:    now,
	}
	if err := d.validateNew(); err != nil {
		return nil, err
	}
	if d.Auth.Timeout > 0 {
		d.ExpireAt = now.Add(time.Duration(d.Auth.Timeout) * time.Second)
	}
	d.Seq = r.ids.Next(now)
	return d, nil
}

// currentProduct returns d's product as the commit sees it: p, read
// before the commit, unless it has changed since (its protocol may change
// while it has no devices, or it may be deleted). It must be in d's
// project, and a CoAP product's devices need a hexadecimal secret.
func currentProduct(rd Reader, p *Product, d *Device) (*Product, error) {
	k := productKey(d.ProductID)
	current := false
	if v, ok := committedInCache(rd, k); ok {
		cp, isProduct := v.(*Product)
		current = isProduct && bytes.Equal(cp.stored, p.stored)
	}
	if !current {
		if b, err := rd.Get(k); err != nil || !bytes.Equal(b, p.stored) {
			if p, err = getProduct(rd, d.ProductID); err != nil {
				return nil, &NotFoundError{Kind: EntityProduct, ID: d.ProductID}
			}
		}
	}
	if p.ProjectID != d.ProjectID {
		return nil, &NotFoundError{Kind: EntityProduct, ID: d.ProductID}
	}
	if p.IsCoAP() && d.Auth.Type == AuthSecret && !isHex(d.Auth.Secret) {
		return nil, invalid("auth_info.secret", "must be hexadecimal for %s devices (it is their DTLS pre-shared key)", p.ProtocolType)
	}
	return p, nil
}

// checkUnique refuses d if its id, its node id (in the entries of idx
// that resolve it) or one of its certificate fingerprints is another
// device's.
func checkUnique(rd Reader, d *Device, idx deviceIndexes) error {
	if err := absent(rd, deviceKey(d.DeviceID), UniqueDeviceID, d.DeviceID); err != nil {
		return err
	}
	for _, k := range idx.keys[:idx.nodes] {
		if err := absent(rd, k, UniqueNodeID, d.NodeID); err != nil {
			return err
		}
	}
	for _, fp := range [...]string{d.Auth.Fingerprint, d.Auth.SecondaryFingerprint} {
		if fp != "" {
			if err := absent(rd, fingerprintKey(fp), UniqueFingerprint, fp); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkProductQuota refuses d if its product has its quota of devices.
func (r *Registry) checkProductQuota(rd Reader, d *Device) error {
	n, err := readCount(rd, productCountKey(d.ProductID))
	if err != nil {
		return err
	}
	if n >= r.quotas.DevicesPerProduct {
		return fmt.Errorf("product %s already has %d devices, its quota: %w", d.ProductID, n, ErrQuota)
	}
	return nil
}

// checkGateway refuses a sub-device whose gateway is not a device of its
// project, is itself nested two levels deep, or has its quota of
// sub-devices.
func (r *Registry) checkGateway(rd Reader, d *Device) error {
	if d.GatewayID == "" {
		return nil
	}
	gw, err := r.getDevice(rd, d.GatewayID)
	if err != nil || gw.ProjectID != d.ProjectID {
		return invalid("gateway_id", "gateway %q does not exist", d.GatewayID)
	}
	if gw.GatewayID != "" {
		if gg, err := r.getDevice(rd, gw.GatewayID); err == nil && gg.GatewayID != "" {
			return invalid("gateway_id", "sub-devices may be nested at most two levels deep")
		}
	}
	n, err := readCount(rd, gatewayCountKey(d.GatewayID))
	if err != nil {
		return err
	}
	if n >= r.quotas.SubDevicesPerGateway {
		return fmt.Errorf("gateway %s already has %d sub-devices, its quota: %w", d.GatewayID, n, ErrQuota)
	}
	return nil
}

// createdLookups are the keys a device presents when it connects (its
// node id entries, its fingerprints): a create caches them, since a new
// device usually connects soon.
func createdLookups(d *Device, idx deviceIndexes) [][]byte {
	keys := idx.keys[:idx.nodes:idx.nodes] // appending copies
	for _, fp := range [...]string{d.Auth.Fingerprint, d.Auth.SecondaryFingerprint} {
		if fp != "" {
			keys = append(keys, fingerprintKey(fp))
		}
	}
	return keys
}
