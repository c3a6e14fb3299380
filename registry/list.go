package registry

import (
	"context"
	"errors"

	"github.com/iotgate/iotgate/registry/kv"
)

// Page selects a window of a listing, newest first, as IoTDA pages: the
// records after Marker (exclusive), skipping Offset of them, at most
// Limit.
type Page struct {
	Limit  int
	Marker string // empty: from the newest
	Offset int
}

// DeviceFilter narrows a device listing; empty fields match all.
type DeviceFilter struct {
	ProductID, NodeID, DeviceName, GatewayID string
}

// DeviceList is one page of devices.
type DeviceList struct {
	Devices []*Device
	Count   int64  // all matching devices, not just this page
	Marker  string // marker of the last device returned
}

// ListDevices lists a project's devices. Listing by product or gateway
// reads that index only; a device_name filter reads the candidates' records.
func (r *Registry) ListDevices(ctx context.Context, project string, f DeviceFilter, pg Page) (*DeviceList, error) {
	out := &DeviceList{}
	err := r.view(ctx, func(rd Reader) error {
		if f.NodeID != "" && f.ProductID != "" {
			// A node id names at most one device of a product: read it
			// through the product's node index, not the product's devices.
			return r.listByNode(rd, project, f, pg, out)
		}
		var prefix, countKey []byte
		switch {
		case f.GatewayID != "":
			prefix = gatewayDevicesPrefix(f.GatewayID)
		case f.ProductID != "":
			prefix, countKey = productDevicesPrefix(f.ProductID), productCountKey(f.ProductID)
		default:
			prefix, countKey = projectDevicesPrefix(project), projectCountKey(project)
		}
		// Only the index's own counter is exact without reading records.
		exactCount := countKey != nil && f.NodeID == "" && f.DeviceName == ""
		if exactCount && f.ProductID != "" {
			// The product must be the caller's for its counter to count.
			if p, err := getProduct(rd, f.ProductID); err != nil || p.ProjectID != project {
				return nil
			}
		}
		var from []byte
		if pg.Marker != "" {
			from = append(append([]byte(nil), prefix...), pg.Marker...)
		}
		skip := pg.Offset
		var count int64
		err := rd.Scan(prefix, from, true, func(k, v []byte) (bool, error) {
			if pg.Marker != "" && string(k[len(prefix):]) >= pg.Marker {
				return true, nil // the marker itself and anything above it
			}
			full := len(out.Devices) >= pg.Limit
			if full && exactCount {
				return false, nil
			}
			d, err := r.getDevice(rd, string(v))
			if errors.Is(err, ErrNotFound) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			if d.ProjectID != project || (f.ProductID != "" && d.ProductID != f.ProductID) ||
				(f.NodeID != "" && d.NodeID != f.NodeID) || (f.DeviceName != "" && d.DeviceName != f.DeviceName) {
				return true, nil
			}
			count++
			if skip > 0 {
				skip--
				return true, nil
			}
			if !full {
				r.fillStatusIn(rd, d)
				out.Devices = append(out.Devices, d)
				out.Marker = d.Seq
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		out.Count = count
		if exactCount {
			out.Count, err = readCount(rd, countKey)
		}
		return err
	})
	return out, err
}

// listByNode is ListDevices of the one device f's product holds under
// f's node id, if it passes f's other filters and the page.
func (r *Registry) listByNode(rd Reader, project string, f DeviceFilter, pg Page, out *DeviceList) error {
	id, err := rd.Get(productNodeKey(f.ProductID, f.NodeID))
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	d, err := r.getDevice(rd, string(id))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.ProjectID != project || (f.DeviceName != "" && d.DeviceName != f.DeviceName) ||
		(f.GatewayID != "" && d.GatewayID != f.GatewayID) {
		return nil
	}
	out.Count = 1
	if (pg.Marker != "" && d.Seq >= pg.Marker) || pg.Offset > 0 || pg.Limit < 1 {
		return nil
	}
	r.fillStatusIn(rd, d)
	out.Devices, out.Marker = []*Device{d}, d.Seq
	return nil
}

// ProductList is one page of products.
type ProductList struct {
	Products []*Product
	Count    int64
	Marker   string
}

// ListProducts lists a project's products, newest first; name filters by
// exact product name.
func (r *Registry) ListProducts(ctx context.Context, project, name string, pg Page) (*ProductList, error) {
	out := &ProductList{}
	err := r.view(ctx, func(rd Reader) error {
		prefix := projectProductsPrefix(project)
		skip := pg.Offset
		return rd.Scan(prefix, nil, true, func(k, v []byte) (bool, error) {
			if pg.Marker != "" && string(k[len(prefix):]) >= pg.Marker {
				return true, nil
			}
			p, err := getProduct(rd, string(v))
			if err != nil {
				return false, err
			}
			if name != "" && p.Name != name {
				return true, nil
			}
			out.Count++
			if skip > 0 {
				skip--
				return true, nil
			}
			if len(out.Products) < pg.Limit {
				out.Products = append(out.Products, p)
				out.Marker = p.Seq
			}
			return true, nil
		})
	})
	return out, err
}
