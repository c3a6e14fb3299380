package registry

import (
	"encoding/json"
	"strings"
	"time"
)

// Product is a device model: devices of a product share protocol and
// capabilities.
type Product struct {
	ProjectID           string          `json:"project"`
	ProductID           string          `json:"id"`
	Name                string          `json:"name"`
	DeviceType          string          `json:"device_type"`
	ProtocolType        string          `json:"protocol_type"`
	DataFormat          string          `json:"data_format"`
	ManufacturerName    string          `json:"manufacturer_name,omitempty"`
	Industry            string          `json:"industry,omitempty"`
	Description         string          `json:"description,omitempty"`
	ServiceCapabilities json.RawMessage `json:"service_capabilities,omitempty"`
	CreateTime          time.Time       `json:"created"`
	Seq                 string          `json:"seq"`

	// ProductSecret authenticates Alibaba-style one-product-one-secret
	// devices (dynamic registration). Plaintext only in memory: the store
	// keeps it sealed in SealedSecret.
	ProductSecret string `json:"-"`
	SealedSecret  []byte `json:"ps,omitempty"`
	// DynamicRegistration is the "Dynamic Registration" switch: while off,
	// every registration by product secret is refused.
	DynamicRegistration bool `json:"dynreg,omitempty"`
	// PreregistrationFree lets devices that were never created register
	// by product secret and device name (needs DynamicRegistration too).
	PreregistrationFree bool `json:"prereg_free,omitempty"`
	// NodeType is ENDPOINT or GATEWAY; gateways may register and log in
	// sub-devices.
	NodeType string `json:"node_type,omitempty"`

	// stored is the record this product was decoded from. A device create
	// reads its product (from the cache) outside the commit and, inside,
	// only checks the stored bytes are still these: decoding a product
	// on the committer's single goroutine was half of its work per create.
	stored []byte
}

// Node types of a product.
const (
	NodeEndpoint = "ENDPOINT"
	NodeGateway  = "GATEWAY"
)

// ProtocolTypes are the protocol_type values IoTDA accepts; LwM2M devices
// use CoAP (we also accept "LwM2M" as a spelling of it).
var protocolTypes = []string{"MQTT", "CoAP", "LwM2M", "HTTP", "HTTPS", "Modbus", "ONVIF", "OPC-UA", "OPC-DA", "Other", "TCP", "UDP"}

// IsCoAP reports whether the product's devices speak LwM2M/CoAP, whose
// endpoint names carry no product and so must be unique platform-wide.
func (p *Product) IsCoAP() bool {
	return strings.EqualFold(p.ProtocolType, "CoAP") || strings.EqualFold(p.ProtocolType, "LwM2M")
}

func (p *Product) validate() error {
	if err := checkID("product_id", p.ProductID, 36, true); err != nil {
		return err
	}
	if err := checkName("name", p.Name, 64, true); err != nil {
		return err
	}
	if err := checkName("device_type", p.DeviceType, 32, true); err != nil {
		return err
	}
	ok := false
	for _, t := range protocolTypes {
		if p.ProtocolType == t {
			ok = true
		}
	}
	if !ok {
		return invalid("protocol_type", "must be one of %s", strings.Join(protocolTypes, ", "))
	}
	switch p.DataFormat {
	case "":
		p.DataFormat = "json"
	case "json", "binary":
	default:
		return invalid("data_format", "must be json or binary")
	}
	if err := checkName("manufacturer_name", p.ManufacturerName, 32, false); err != nil {
		return err
	}
	if err := checkName("industry", p.Industry, 64, false); err != nil {
		return err
	}
	if err := checkText("description", p.Description, 128); err != nil {
		return err
	}
	switch p.NodeType {
	case "":
		p.NodeType = NodeEndpoint
	case NodeEndpoint, NodeGateway:
	default:
		return invalid("node_type", "must be ENDPOINT or GATEWAY")
	}
	if p.ProductSecret != "" {
		if len(p.ProductSecret) < 8 || len(p.ProductSecret) > 64 {
			return invalid("product_secret", "must be 8 to 64 characters")
		}
		if err := checkID("product_secret", p.ProductSecret, 64, true); err != nil {
			return err
		}
	}
	if len(p.ServiceCapabilities) > 500*1024 {
		return invalid("service_capabilities", "must be at most 500 KB")
	}
	return nil
}
