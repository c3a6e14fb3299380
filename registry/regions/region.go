package regions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// Endpoint is where a region's devices connect.
type Endpoint struct {
	MQTTHost string
	MQTTPort int
	// Address is the "host:port" Huawei-style devices are given.
	Address string
	// LwM2MURI and LwM2MSecureURI are the region's LwM2M server URIs
	// ("coap://host:5683", "coaps://host:5684") an LwM2M bootstrap
	// writes for NoSec and PSK devices; empty: the region serves none.
	LwM2MURI       string
	LwM2MSecureURI string
}

// Grant is what a verified pre-auth gives the device: its MQTT username
// (iotId, the device id) and password (iotToken).
type Grant struct {
	IotID    string `json:"iotId"`
	IotToken string `json:"iotToken"`
}

// Held is a device as the region holding it describes it to the centre.
type Held struct {
	ProjectID  string `json:"projectId"`
	DeviceID   string `json:"deviceId"`
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
	Online     bool   `json:"online"`
}

// Transfer is a device's identity and credentials as they move from one
// region to another. It carries secrets: it lives in memory and on the
// (authenticated) wire between regions and centre, never in a store
// other than the regions'.
type Transfer struct {
	ProjectID       string `json:"projectId"`
	DeviceID        string `json:"deviceId"`
	ProductKey      string `json:"productKey"`
	DeviceName      string `json:"deviceName"`
	Name            string `json:"name,omitempty"`
	Description     string `json:"description,omitempty"`
	Secret          string `json:"secret"`
	SecondarySecret string `json:"secondarySecret,omitempty"`
	SecureAccess    bool   `json:"secureAccess,omitempty"`
}

// Region is what the centre asks of one region. Package activation
// serves a Local over HTTP and implements Region as its client.
type Region interface {
	// PreAuth verifies a pre-auth's sign against the device's secret and
	// issues an iotToken: ErrUnknownDevice, ErrAuthType, ErrBadSign, a
	// ParamError.
	PreAuth(ctx context.Context, p PreAuth) (Grant, error)
	// Device describes the device, or ErrUnknownDevice.
	Device(ctx context.Context, pk, dn string) (Held, error)
	// Export returns the device's identity and credentials.
	Export(ctx context.Context, pk, dn string) (Transfer, error)
	// Import creates the device; importing one the region holds already
	// with the same id and secret succeeds (a retried transfer).
	Import(ctx context.Context, t Transfer) error
	// Delete removes the device and its data, closing its sessions;
	// deleting an absent device succeeds.
	Delete(ctx context.Context, pk, dn string) error
	// NotifyBootstrap tells the online device to bootstrap again
	// (Alibaba thing.bootstrap.notify over MQTT, a re-bootstrap over
	// LwM2M), or ErrOffline; with to, an MQTT device is first sent its
	// new endpoint directly (thing.bootstrap.config.push).
	NotifyBootstrap(ctx context.Context, pk, dn string, to *Redirect) error
	// IssueToken issues an iotToken for the device (ErrUnknownDevice,
	// ErrAuthType), for the redirect of a device moving here.
	IssueToken(ctx context.Context, pk, dn string) (Grant, error)
	// CheckLogin verifies an IoTDA-style MQTT credential (Huawei IoTDP
	// bootstrap): ErrUnknownDevice, ErrAuthType, ErrBadSign.
	CheckLogin(ctx context.Context, l Login) (Held, error)
	// LwM2MDevice describes the device an LwM2M endpoint name names,
	// with its secret, for the centre's LwM2M bootstrap server:
	// ErrUnknownDevice.
	LwM2MDevice(ctx context.Context, endpoint string) (LwM2MAccount, error)
}

// LocalRegistry is what a region needs of its registry.
type LocalRegistry interface {
	DeviceByProductNode(ctx context.Context, productID, nodeID string) (*registry.Device, error)
	Device(ctx context.Context, id string) (*registry.Device, error)
	CreateDevice(ctx context.Context, n registry.NewDevice) (*registry.Device, error)
	DeleteDevice(ctx context.Context, project, id string) error
}

// Notifier tells an online device to bootstrap again; the MQTT and
// LwM2M servers implement it (registry.ErrNotConnected when the device
// has no session there), and Notifiers asks both.
type Notifier interface {
	NotifyBootstrap(ctx context.Context, d *registry.Device) error
}

// Local is the Region a node serves for its own devices.
type Local struct {
	Registry LocalRegistry
	Tokens   *Tokens
	// Notifier is nil when the node runs no MQTT or LwM2M listener;
	// Pusher is nil without an MQTT listener.
	Notifier Notifier
	Pusher   ConfigPusher
	// Endpoints resolves LwM2M endpoint names; nil when the node runs no
	// LwM2M server (every name is then unknown).
	Endpoints EndpointResolver
	Now       func() time.Time
}

var _ Region = (*Local)(nil)

func (l *Local) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Local) device(ctx context.Context, pk, dn string) (*registry.Device, error) {
	d, err := l.Registry.DeviceByProductNode(ctx, pk, dn)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, ErrUnknownDevice
	}
	if err != nil {
		return nil, fmt.Errorf("device lookup: %w", err)
	}
	return d, nil
}

// PreAuth implements Region.
func (l *Local) PreAuth(ctx context.Context, p PreAuth) (Grant, error) {
	if err := p.Validate(); err != nil {
		return Grant{}, err
	}
	proof, mac, err := p.Proof()
	if err != nil {
		return Grant{}, err
	}
	d, err := l.device(ctx, p.ProductKey, p.DeviceName)
	if err != nil {
		return Grant{}, err
	}
	if d.Auth.Type != registry.AuthSecret || d.Auth.Secret == "" {
		return Grant{}, ErrAuthType
	}
	// Only the primary secret: tokens are bound to it (see Tokens).
	primary := *d
	primary.Auth.SecondarySecret = ""
	if _, ok := primary.MatchSecret(proof, mac); !ok {
		return Grant{}, ErrBadSign
	}
	if len(d.DeviceID) > MaxIotIDLen {
		return Grant{}, &ParamError{Param: "deviceName", Reason: fmt.Sprintf("device id longer than %d characters cannot be an iotId", MaxIotIDLen)}
	}
	return Grant{IotID: d.DeviceID, IotToken: l.Tokens.Issue(d, l.now())}, nil
}

// Device implements Region.
func (l *Local) Device(ctx context.Context, pk, dn string) (Held, error) {
	d, err := l.device(ctx, pk, dn)
	if err != nil {
		return Held{}, err
	}
	// Device (by id) fills in the live status.
	if d, err = l.Registry.Device(ctx, d.DeviceID); err != nil {
		return Held{}, fmt.Errorf("device status: %w", err)
	}
	return Held{ProjectID: d.ProjectID, DeviceID: d.DeviceID, ProductKey: d.ProductID, DeviceName: d.NodeID,
		Online: d.Status == registry.StatusOnline}, nil
}

// Export implements Region.
func (l *Local) Export(ctx context.Context, pk, dn string) (Transfer, error) {
	d, err := l.device(ctx, pk, dn)
	if err != nil {
		return Transfer{}, err
	}
	if d.Auth.Type != registry.AuthSecret {
		return Transfer{}, ErrAuthType
	}
	if d.GatewayID != "" {
		// Its gateway's session carries it; it cannot move alone.
		return Transfer{}, &ParamError{Param: "deviceName", Reason: "a sub-device cannot move without its gateway"}
	}
	return Transfer{ProjectID: d.ProjectID, DeviceID: d.DeviceID, ProductKey: d.ProductID, DeviceName: d.NodeID,
		Name: d.DeviceName, Description: d.Description, Secret: d.Auth.Secret,
		SecondarySecret: d.Auth.SecondarySecret, SecureAccess: d.Auth.SecureAccess}, nil
}

// Import implements Region.
func (l *Local) Import(ctx context.Context, t Transfer) error {
	_, err := l.Registry.CreateDevice(ctx, registry.NewDevice{ProjectID: t.ProjectID, DeviceID: t.DeviceID,
		NodeID: t.DeviceName, ProductID: t.ProductKey, DeviceName: t.Name, Description: t.Description,
		Auth: registry.AuthInfo{Type: registry.AuthSecret, Secret: t.Secret, SecondarySecret: t.SecondarySecret,
			SecureAccess: t.SecureAccess}})
	if errors.Is(err, registry.ErrAlreadyExists) {
		if d, lerr := l.device(ctx, t.ProductKey, t.DeviceName); lerr == nil && d.DeviceID == t.DeviceID && d.Auth.Secret == t.Secret {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("import device %s: %w", t.DeviceID, err)
	}
	return nil
}

// Delete implements Region.
func (l *Local) Delete(ctx context.Context, pk, dn string) error {
	d, err := l.device(ctx, pk, dn)
	if errors.Is(err, ErrUnknownDevice) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := l.Registry.DeleteDevice(ctx, d.ProjectID, d.DeviceID); err != nil && !errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("delete device %s: %w", d.DeviceID, err)
	}
	return nil
}

// NotifyBootstrap implements Region. A device connected over MQTT gets
// the redirect first (iotkit's redirect-region handler acts on it), then
// the notify (Link SDK 4.x's bootstrap component acts on that, and asks
// the centre, which answers the same region): either way it ends in its
// new region.
func (l *Local) NotifyBootstrap(ctx context.Context, pk, dn string, to *Redirect) error {
	d, err := l.device(ctx, pk, dn)
	if err != nil {
		return err
	}
	pushed, err := l.pushConfig(ctx, d, to)
	if err != nil {
		return fmt.Errorf("bootstrap config push: %w", err)
	}
	if l.Notifier == nil {
		if pushed {
			return nil
		}
		return ErrOffline
	}
	err = l.Notifier.NotifyBootstrap(ctx, d)
	if errors.Is(err, registry.ErrNotConnected) {
		if pushed {
			return nil
		}
		return ErrOffline
	}
	return err
}
