package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
)

// Problem is one disagreement between the stored records and their
// indexes or counters, found by Check.
type Problem struct {
	Key  string // the key at fault, printable
	What string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s", p.Key, p.What) }

// Check verifies, in one snapshot of the store, that the records and
// what is derived from them agree: every device's index entries
// (product/node, platform-wide node for CoAP products, the listings, its
// gateway's, its certificate fingerprints and its expiry deadline) point
// at it; every index entry belongs to a device that owns it; and the
// device counters of projects, products and gateways equal the devices
// found. It reads the whole store: a tool for an operator (`iotgate
// check`) and for the crash tests, not for a serving path.
func (r *Registry) Check(ctx context.Context) ([]Problem, error) {
	var problems []Problem
	bad := func(k []byte, format string, a ...any) {
		problems = append(problems, Problem{Key: fmt.Sprintf("%q", k), What: fmt.Sprintf(format, a...)})
	}
	err := r.view(ctx, func(rd Reader) error {
		products := map[string]*Product{}
		err := rd.Scan(prefixKey(famProduct), nil, false, func(k, v []byte) (bool, error) {
			var p Product
			if err := json.Unmarshal(v, &p); err != nil {
				bad(k, "product record does not decode: %v", err)
				return true, nil
			}
			products[p.ProductID] = &p
			return true, nil
		})
		if err != nil {
			return err
		}
		owned := map[string]string{} // index key -> the device that owns it
		perProject, perProduct, perGateway := map[string]int64{}, map[string]int64{}, map[string]int64{}
		err = rd.Scan(prefixKey(famDevice), nil, false, func(k, v []byte) (bool, error) {
			id := string(k[len(famDevice)+1:])
			d, err := r.decodeDevice(id, v)
			if err != nil {
				bad(k, "device record does not decode: %v", err)
				return true, nil
			}
			p := products[d.ProductID]
			if p == nil {
				bad(k, "device of product %s, which does not exist", d.ProductID)
				return true, nil
			}
			keys := ownedIndexes(d, p.IsCoAP()).keys
			for _, fp := range []string{d.Auth.Fingerprint, d.Auth.SecondaryFingerprint} {
				if fp != "" {
					keys = append(keys, fingerprintKey(fp))
				}
			}
			for _, ik := range keys {
				owned[string(ik)] = id
				if got, err := rd.Get(ik); err != nil {
					bad(ik, "index entry of device %s missing (%v)", id, err)
				} else if string(got) != id {
					bad(ik, "index entry of device %s points at %q", id, got)
				}
			}
			if !d.ExpireAt.IsZero() {
				ek := expiryKey(d.ExpireAt, id)
				owned[string(ek)] = id
				if _, err := rd.Get(ek); err != nil {
					bad(ek, "expiry deadline of device %s missing (%v)", id, err)
				}
			}
			perProject[d.ProjectID]++
			perProduct[d.ProductID]++
			if d.GatewayID != "" {
				perGateway[d.GatewayID]++
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		// Every index entry belongs to a device that owns it.
		for _, fam := range []string{famNode, famProductNode, famFingerprint, famProjectDevice, famProductDevice, famGatewayDevice} {
			err := rd.Scan(prefixKey(fam), nil, false, func(k, v []byte) (bool, error) {
				if owner, ok := owned[string(k)]; !ok {
					bad(k, "index entry (to %q) that no device owns", v)
				} else if owner != string(v) {
					bad(k, "index entry to %q, owned by device %s", v, owner)
				}
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		err = rd.Scan(expiryPrefix, nil, false, func(k, _ []byte) (bool, error) {
			if _, ok := owned[string(k)]; !ok {
				bad(k, "expiry deadline of no device")
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		// Counters, of every name that has devices or a counter key.
		for _, c := range []struct {
			fam   string
			found map[string]int64
			key   func(string) []byte
		}{
			{famProjectCount, perProject, projectCountKey},
			{famProductCount, perProduct, productCountKey},
			{famGatewayCount, perGateway, gatewayCountKey},
		} {
			names := map[string]bool{}
			for n := range c.found {
				names[n] = true
			}
			prefix := prefixKey(c.fam)
			err := rd.Scan(prefix, nil, false, func(k, _ []byte) (bool, error) {
				name, _, _ := bytes.Cut(k[len(prefix):], []byte{sep})
				names[string(name)] = true
				return true, nil
			})
			if err != nil {
				return err
			}
			sorted := make([]string, 0, len(names))
			for n := range names {
				sorted = append(sorted, n)
			}
			sort.Strings(sorted)
			for _, n := range sorted {
				got, err := readCount(rd, c.key(n))
				if err != nil {
					return err
				}
				if got != c.found[n] {
					bad(c.key(n), "counter says %d devices, %d found", got, c.found[n])
				}
			}
		}
		return nil
	})
	return problems, err
}
