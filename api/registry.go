package api

import (
	"context"
	"encoding/json"

	"github.com/iotgate/iotgate/registry"
)

// Registry is what the REST API needs of iotgate's registry, grouped by
// the resources it serves; *registry.Registry satisfies it (checked where
// cmd/iotgate wires them). Every call but DynamicRegister is scoped to
// the caller's project.
type Registry interface {
	productRegistry
	deviceRegistry
	certRegistry
	dataRegistry
	asyncCommandRegistry
	messageRegistry
	eventRegistry
	dynRegRegistry
	clusterRegistry
	routingRegistry
	flowPolicyRegistry
	backlogPolicyRegistry
	groupRegistry
	packageRegistry
}

// Deliverer reaches devices: the registry's delivery router, which
// decides by the device's protocol which requests it takes and where its
// session is (*registry.Router satisfies it).
type Deliverer interface {
	SendCommand(ctx context.Context, d *registry.Device, c registry.Command) (json.RawMessage, error)
	SendProperties(ctx context.Context, d *registry.Device, p registry.PropertiesRequest) (json.RawMessage, error)
	CreateAsyncCommand(ctx context.Context, project string, d *registry.Device, n registry.NewAsyncCommand) (*registry.AsyncCommand, error)
	SendMessage(ctx context.Context, project string, d *registry.Device, n registry.NewDownlinkMessage) (*registry.DownlinkMessage, error)
}

// productRegistry serves /products.
type productRegistry interface {
	CreateProduct(ctx context.Context, p registry.Product) (*registry.Product, error)
	Product(ctx context.Context, project, id string) (*registry.Product, error)
	ListProducts(ctx context.Context, project, name string, pg registry.Page) (*registry.ProductList, error)
	UpdateProduct(ctx context.Context, project, id string, u registry.ProductUpdate) (*registry.Product, error)
	ResetProductSecret(ctx context.Context, project, id string) (string, error)
	DeleteProduct(ctx context.Context, project, id string) error
}

// deviceRegistry serves /devices and its actions.
type deviceRegistry interface {
	CreateDevice(ctx context.Context, n registry.NewDevice) (*registry.Device, error)
	ProjectDevice(ctx context.Context, project, id string) (*registry.Device, error)
	ListDevices(ctx context.Context, project string, f registry.DeviceFilter, pg registry.Page) (*registry.DeviceList, error)
	UpdateDevice(ctx context.Context, project, id string, u registry.DeviceUpdate) (*registry.Device, error)
	DeleteDevice(ctx context.Context, project, id string) error
	SetFrozen(ctx context.Context, project, id string, frozen bool) error
	ResetSecret(ctx context.Context, project, id string, slot registry.SecretSlot, secret string, forceDisconnect bool) (string, error)
	ResetFingerprint(ctx context.Context, project, id string, slot registry.SecretSlot, fp string, forceDisconnect bool) (string, error)
	ResetThing(ctx context.Context, project, id string) (*registry.Device, error)
	KeepClientID(ctx context.Context, project, deviceID, clientID string) (*registry.Device, error)
	ClearClientIDs(ctx context.Context, project, deviceID string) (*registry.Device, error)
	BindTags(ctx context.Context, project, deviceID string, tags []registry.Tag) (*registry.Device, error)
	UnbindTags(ctx context.Context, project, deviceID string, keys []string) (*registry.Device, error)
	DevicesByTags(ctx context.Context, project string, qs []registry.TagQuery, pg registry.Page) (*registry.TaggedList, error)
}

// certRegistry serves /certificates (device CA certificates).
type certRegistry interface {
	AddCACert(ctx context.Context, project, content string) (*registry.CACert, error)
	CACert(ctx context.Context, project, id string) (*registry.CACert, error)
	CACerts(ctx context.Context, project string) ([]*registry.CACert, error)
	VerifyCACert(ctx context.Context, project, id, verifyPEM string) (*registry.CACert, error)
	DeleteCACert(ctx context.Context, project, id string) error
}

// dataRegistry serves a device's reported messages and shadow.
type dataRegistry interface {
	Messages(ctx context.Context, project, deviceID string, limit int) ([]registry.Message, error)
	DeviceShadow(ctx context.Context, project, deviceID string) (*registry.Shadow, error)
	UpdateDesired(ctx context.Context, project, deviceID string, ups []registry.DesiredUpdate) (*registry.Shadow, error)
}

// asyncCommandRegistry serves /async-commands.
type asyncCommandRegistry interface {
	CreateAsyncCommand(ctx context.Context, project, deviceID string, n registry.NewAsyncCommand) (*registry.AsyncCommand, error)
	AsyncCommand(ctx context.Context, project, deviceID, commandID string) (*registry.AsyncCommand, error)
	ListAsyncCommands(ctx context.Context, project, deviceID string, f registry.AsyncCommandFilter, pg registry.Page) (*registry.AsyncCommandList, error)
}

// messageRegistry serves a device's downlink messages.
type messageRegistry interface {
	DownlinkMessages(ctx context.Context, project, deviceID string) ([]*registry.DownlinkMessage, error)
	DownlinkMessage(ctx context.Context, project, deviceID, messageID string) (*registry.DownlinkMessage, error)
}

// eventRegistry serves the event stream and its consumers.
type eventRegistry interface {
	Events(ctx context.Context, project string, cursor uint64, limit int) (*registry.EventPage, error)
	AddEventConsumer(ctx context.Context, project, name string) (*registry.EventConsumer, error)
	EventConsumer(ctx context.Context, project, name string) (*registry.EventConsumer, error)
	AckEvents(ctx context.Context, project, name string, cursor uint64) error
	DeleteEventConsumer(ctx context.Context, project, name string) error
}

// dynRegRegistry serves Alibaba's HTTPS dynamic registration, which
// names a product, not a project.
type dynRegRegistry interface {
	DynamicRegister(ctx context.Context, productID, nodeID string, verify func(*registry.Product) bool) (*registry.Device, error)
}
