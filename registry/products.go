package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry/kv"
)

// ServiceCapability is the part of a product's service model the registry
// checks; the rest is kept as the client sent it.
type serviceCapability struct {
	ServiceID   string `json:"service_id"`
	ServiceType string `json:"service_type"`
}

func checkCapabilities(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	var caps []serviceCapability
	if err := json.Unmarshal(raw, &caps); err != nil {
		return invalid("service_capabilities", "must be an array of service objects")
	}
	if len(caps) > 500 {
		return invalid("service_capabilities", "must have at most 500 services")
	}
	seen := make(map[string]bool, len(caps))
	for i, c := range caps {
		if c.ServiceID == "" || len(c.ServiceID) > 64 {
			return invalid(fmt.Sprintf("service_capabilities[%d].service_id", i), "is required, at most 64 characters")
		}
		if c.ServiceType == "" || len(c.ServiceType) > 64 {
			return invalid(fmt.Sprintf("service_capabilities[%d].service_type", i), "is required, at most 64 characters")
		}
		if seen[c.ServiceID] {
			return invalid(fmt.Sprintf("service_capabilities[%d].service_id", i), "%q is not unique in the product", c.ServiceID)
		}
		seen[c.ServiceID] = true
	}
	return nil
}

// CreateProduct registers a product; an empty ProductID is generated.
// Product ids are unique platform-wide because device ids derive from them.
func (r *Registry) CreateProduct(ctx context.Context, p Product) (*Product, error) {
	if p.ProjectID == "" {
		return nil, invalid("project_id", "is required")
	}
	if p.ProductID == "" {
		p.ProductID = randomHex(12)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if err := checkCapabilities(p.ServiceCapabilities); err != nil {
		return nil, err
	}
	if p.ProductSecret == "" {
		p.ProductSecret = NewSecret()
	}
	now := r.now().UTC()
	p.CreateTime = now
	p.Seq = r.ids.Next(now)
	err := r.write(ctx, func(w Writer) error {
		if err := absent(w, productKey(p.ProductID), UniqueProductID, p.ProductID); err != nil {
			return err
		}
		if err := r.putProduct(w, &p); err != nil {
			return err
		}
		return w.Set(projectProductKey(p.ProjectID, p.Seq), []byte(p.ProductID))
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// putProduct stores p with its product secret sealed.
func (r *Registry) putProduct(w Writer, p *Product) error {
	rec := *p
	rec.SealedSecret = r.seal.seal(p.ProductSecret, p.ProductID+"/product_secret")
	b, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("encode product %s: %w", p.ProductID, err)
	}
	return w.Set(productKey(p.ProductID), b)
}

func getProduct(rd Reader, id string) (*Product, error) {
	b, err := rd.Get(productKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityProduct, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read product %s: %w", id, err)
	}
	var p Product
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode product %s: %w", id, err)
	}
	p.stored = b
	return &p, nil
}

// openProduct fills in the product secret of a product read from the
// store (getProduct leaves it sealed: most readers do not need it).
func (r *Registry) openProduct(p *Product) error {
	s, err := r.seal.open(p.SealedSecret, p.ProductID+"/product_secret")
	if err != nil {
		return fmt.Errorf("product %s: %w", p.ProductID, err)
	}
	p.ProductSecret = s
	return nil
}

// Product returns a product of the project, with its product secret.
func (r *Registry) Product(ctx context.Context, project, id string) (*Product, error) {
	p, err := r.ProductByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.ProjectID != project {
		return nil, &NotFoundError{Kind: EntityProduct, ID: id}
	}
	return p, nil
}

// ProductByID returns a product of any project, with its product secret;
// device-side authentication (which carries no project) uses it.
//
// Every device view and authentication by product secret reads a product,
// so decoded products are cached like devices (the committer invalidates
// them on every write).
func (r *Registry) ProductByID(ctx context.Context, id string) (*Product, error) {
	k := productKey(id)
	var gen uint64
	if r.cache != nil {
		v, g, ok := r.cache.get(k)
		if ok {
			p := *v.(*Product)
			return &p, nil
		}
		gen = g
	}
	var p *Product
	err := r.view(ctx, func(rd Reader) error {
		var err error
		p, err = getProduct(rd, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := r.openProduct(p); err != nil {
		return nil, err
	}
	if r.cache != nil {
		cp := *p
		r.cache.put(k, &cp, gen)
	}
	return p, nil
}

// ProductDeviceCount returns how many devices a product has.
func (r *Registry) ProductDeviceCount(ctx context.Context, id string) (int64, error) {
	var n int64
	err := r.view(ctx, func(rd Reader) error {
		var err error
		n, err = readCount(rd, productCountKey(id))
		return err
	})
	return n, err
}

// ProductUpdate holds the fields PUT /products/{id} may change.
type ProductUpdate struct {
	Name, DeviceType, ProtocolType, DataFormat *string
	ManufacturerName, Industry, Description    *string
	ServiceCapabilities                        json.RawMessage
	DynamicRegistration, PreregistrationFree   *bool
	NodeType                                   *string
	// ProductSecret replaces the product secret; use ResetProductSecret
	// to generate one.
	ProductSecret *string
}

// UpdateProduct changes a product. Its protocol may change only while it
// has no devices, because CoAP devices are indexed differently.
func (r *Registry) UpdateProduct(ctx context.Context, project, id string, u ProductUpdate) (*Product, error) {
	if err := checkCapabilities(u.ServiceCapabilities); err != nil {
		return nil, err
	}
	var out *Product
	err := r.write(ctx, func(w Writer) error {
		p, err := getProduct(w, id)
		if err != nil || p.ProjectID != project {
			return &NotFoundError{Kind: EntityProduct, ID: id}
		}
		wasCoAP := p.IsCoAP()
		set := func(dst *string, src *string) {
			if src != nil {
				*dst = *src
			}
		}
		set(&p.Name, u.Name)
		set(&p.DeviceType, u.DeviceType)
		set(&p.ProtocolType, u.ProtocolType)
		set(&p.DataFormat, u.DataFormat)
		set(&p.ManufacturerName, u.ManufacturerName)
		set(&p.Industry, u.Industry)
		set(&p.Description, u.Description)
		if u.ServiceCapabilities != nil {
			p.ServiceCapabilities = u.ServiceCapabilities
		}
		if u.DynamicRegistration != nil {
			p.DynamicRegistration = *u.DynamicRegistration
		}
		if u.PreregistrationFree != nil {
			p.PreregistrationFree = *u.PreregistrationFree
		}
		wasGateway := p.NodeType == NodeGateway
		set(&p.NodeType, u.NodeType)
		if err := r.openProduct(p); err != nil {
			return err
		}
		set(&p.ProductSecret, u.ProductSecret)
		if err := p.validate(); err != nil {
			return err
		}
		if p.IsCoAP() != wasCoAP {
			n, err := readCount(w, productCountKey(id))
			if err != nil {
				return err
			}
			if n > 0 {
				return invalid("protocol_type", "cannot change between CoAP and other protocols while the product has devices")
			}
		}
		if wasGateway && p.NodeType != NodeGateway {
			n, err := readCount(w, productCountKey(id))
			if err != nil {
				return err
			}
			if n > 0 {
				return invalid("node_type", "cannot change a gateway product to ENDPOINT while it has devices")
			}
		}
		out = p
		return r.putProduct(w, p)
	})
	return out, err
}

// ResetProductSecret replaces a product's secret with a new random one
// (a leaked product secret is otherwise valid for every device name).
func (r *Registry) ResetProductSecret(ctx context.Context, project, id string) (string, error) {
	secret := NewSecret()
	_, err := r.UpdateProduct(ctx, project, id, ProductUpdate{ProductSecret: &secret})
	return secret, err
}

// DeleteProduct removes a product that has no devices.
func (r *Registry) DeleteProduct(ctx context.Context, project, id string) error {
	return r.write(ctx, func(w Writer) error {
		p, err := getProduct(w, id)
		if err != nil || p.ProjectID != project {
			return &NotFoundError{Kind: EntityProduct, ID: id}
		}
		n, err := readCount(w, productCountKey(id))
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("product %s has %d devices: %w", id, n, ErrHasDevices)
		}
		if err := w.Delete(productKey(id)); err != nil {
			return err
		}
		return w.Delete(projectProductKey(project, p.Seq))
	})
}
