package registry

import (
	"encoding/json"
	"time"
)

// Status is a device's connection status as IoTDA reports it.
type Status string

// The device statuses. Only INACTIVE, FROZEN and the activation are stored;
// ONLINE/OFFLINE come from live sessions (see Registry.Connected).
const (
	StatusOnline   Status = "ONLINE"
	StatusOffline  Status = "OFFLINE"
	StatusAbnormal Status = "ABNORMAL"
	StatusInactive Status = "INACTIVE"
	StatusFrozen   Status = "FROZEN"
)

// AuthType is how a device proves its identity.
type AuthType string

// The authentication types of IoTDA.
const (
	AuthSecret       AuthType = "SECRET"
	AuthCertificates AuthType = "CERTIFICATES"
)

// MaxTimeout is the largest auth_info.timeout (int32 seconds).
const MaxTimeout = 2147483647

// AuthInfo holds a device's credentials. Secrets are plaintext only in
// memory; the store keeps them sealed (see sealer).
type AuthInfo struct {
	Type                 AuthType `json:"type"`
	Secret               string   `json:"-"`
	SecondarySecret      string   `json:"-"`
	Fingerprint          string   `json:"fp,omitempty"`  // lowercase hex, SHA-1 or SHA-256
	SecondaryFingerprint string   `json:"fp2,omitempty"` // lowercase hex
	SecureAccess         bool     `json:"secure"`
	// Timeout is the unconnected-registration lifetime in seconds; 0 = never.
	Timeout int64 `json:"timeout,omitempty"`
	// TimeoutSet records whether the client set Timeout: IoTDA echoes it
	// only then.
	TimeoutSet bool `json:"timeout_set,omitempty"`
}

// Device is one registered device.
type Device struct {
	ProjectID     string          `json:"project"`
	DeviceID      string          `json:"id"`
	NodeID        string          `json:"node"`
	ProductID     string          `json:"product"`
	GatewayID     string          `json:"gateway,omitempty"` // empty: directly connected
	DeviceName    string          `json:"name,omitempty"`
	Description   string          `json:"desc,omitempty"`
	ExtensionInfo json.RawMessage `json:"ext,omitempty"`
	Auth          AuthInfo        `json:"auth"`
	Frozen        bool            `json:"frozen,omitempty"`
	CreateTime    time.Time       `json:"created"`
	// ActiveTime is the first successful connection; zero while INACTIVE.
	ActiveTime time.Time `json:"active,omitzero"`
	// ExpireAt is when an unconnected device is deleted; zero = never.
	ExpireAt time.Time `json:"expire,omitzero"`
	// StatusTime is the last connection status change.
	StatusTime time.Time `json:"status_time,omitzero"`
	// Seq orders devices for listing and is IoTDA's paging marker.
	Seq string `json:"seq"`
	// DynReg is the device's dynamic-registration state: "" (never
	// registered), "delivered" (its secret went to a physical device;
	// further registrations are refused) or "reset" (ResetThing reopened
	// registration).
	DynReg string `json:"dynreg,omitempty"`
	// ClientIDs are the physical devices registered under this device name
	// in preregistration-free mode; ClientIDKept says the operator kept
	// one and refuses the rest.
	ClientIDs    []ClientID `json:"client_ids,omitempty"`
	ClientIDKept bool       `json:"client_id_kept,omitempty"`
	// Tags are the device's tags (tags.go), in the order bound.
	Tags []Tag `json:"tags,omitempty"`

	// Status is derived on every read, never stored.
	Status Status `json:"-"`
}

// Secrets returns the device's non-empty secrets, primary first, for
// credential checks.
func (d *Device) Secrets() []string {
	s := make([]string, 0, 2)
	if d.Auth.Secret != "" {
		s = append(s, d.Auth.Secret)
	}
	if d.Auth.SecondarySecret != "" {
		s = append(s, d.Auth.SecondarySecret)
	}
	return s
}

// EffectiveGatewayID is the gateway as IoTDA reports it: a directly
// connected device is its own gateway.
func (d *Device) EffectiveGatewayID() string {
	if d.GatewayID == "" {
		return d.DeviceID
	}
	return d.GatewayID
}

// deviceRecordJSON is the form device records were stored in before the
// binary one (devicebinary.go); they still read.
type deviceRecordJSON struct {
	Device
	Secret    []byte `json:"s,omitempty"`
	Secondary []byte `json:"s2,omitempty"`
}
