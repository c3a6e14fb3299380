package registry

import (
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry/kv"
)

// Sentinel errors; adapters map them to their protocol's codes.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrHasDevices    = errors.New("product still has devices")
	// ErrInUse: a record another one still needs cannot be removed.
	ErrInUse  = errors.New("still in use")
	ErrQuota  = errors.New("quota exceeded")
	ErrFrozen = errors.New("device is frozen")
	ErrClosed = errors.New("registry is closed")
	// ErrNodeUnreachable: the node holding a device's session did not
	// answer (a NodeLink refusal); the request was not delivered.
	ErrNodeUnreachable = errors.New("node unreachable")
	// ErrTakenOver: a connect lost to a newer one of the same device on
	// another node before it finished; the adapter refuses it.
	ErrTakenOver = errors.New("session taken over by a newer connection on another node")
	// ErrStorageFull: the store refuses writes until space is freed;
	// nothing was written (the engine's kv.ErrFull).
	ErrStorageFull = kv.ErrFull
	// ErrUnavailable: the store could not be reached; nothing was
	// written, or (ErrOutcomeUnknown) the write's outcome is unknown.
	ErrUnavailable    = kv.ErrUnavailable
	ErrOutcomeUnknown = kv.ErrOutcomeUnknown
	// ErrConflict: a write lost to concurrent writes (on a cluster, of
	// other nodes) as many times as the registry re-runs it; nothing was
	// written.
	ErrConflict = kv.ErrConflict
)

// ValidationError names the field whose value is invalid.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

func invalid(field, format string, a ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// ConflictError says which unique value is already taken.
type ConflictError struct {
	Field UniqueField
	Value string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %q already exists", e.Field, e.Value)
}

func (e *ConflictError) Unwrap() error { return ErrAlreadyExists }

// UniqueField names a value that at most one record may hold.
type UniqueField uint8

// The unique values a create or change may collide on.
const (
	UniqueDeviceID       UniqueField = iota + 1 // a device id
	UniqueNodeID                                // a node id, within a product or (CoAP) platform-wide
	UniqueFingerprint                           // a device certificate's fingerprint
	UniqueProductID                             // a product id
	UniqueCertificate                           // a device CA certificate's content, within a project
	UniqueMessageID                             // a downlink message id, within a device
	UniqueGroupName                             // a device group's name, within a project
	UniquePackageVersion                        // an OTA package's version, within its product and package type
)

// String is the field's name in messages (the IoTDA JSON field where
// there is one).
func (f UniqueField) String() string {
	switch f {
	case UniqueDeviceID:
		return "device_id"
	case UniqueNodeID:
		return "node_id"
	case UniqueFingerprint:
		return "fingerprint"
	case UniqueProductID:
		return "product_id"
	case UniqueCertificate:
		return "certificate"
	case UniqueMessageID:
		return "message_id"
	case UniqueGroupName:
		return "device group name"
	case UniquePackageVersion:
		return "version"
	}
	return fmt.Sprintf("UniqueField(%d)", uint8(f))
}

// NotFoundError says which entity is missing.
type NotFoundError struct {
	Kind Entity
	ID   string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q does not exist", e.Kind, e.ID) }

func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// Entity names what a NotFoundError did not find.
type Entity uint8

// The entities a lookup may miss. A device looked up by one of its keys
// other than its id is missing as that key (EntityNode,
// EntityFingerprint), so the message names what the caller gave.
const (
	EntityDevice          Entity = iota + 1 // by device id
	EntityNode                              // a device by node id (with or without its product)
	EntityFingerprint                       // a device by certificate fingerprint
	EntityProduct                           // a product
	EntityCertificate                       // a device CA certificate
	EntityCommand                           // an asynchronous command
	EntityClientID                          // a preregistration-free device's ClientID
	EntityMessage                           // a downlink message
	EntityEventConsumer                     // an event consumer
	EntityRoutingRule                       // a routing rule
	EntityRuleAction                        // a routing rule's action
	EntityFlowPolicy                        // a forwarding flow-control policy
	EntityDeviceGroup                       // a device group
	EntityOTAPackage                        // an OTA upgrade package
	EntityFirmwareUpgrade                   // a firmware upgrade job
	EntityBacklogPolicy                     // a forwarding backlog policy
)

// String is the entity's name in messages.
func (e Entity) String() string {
	switch e {
	case EntityDevice:
		return "device"
	case EntityNode:
		return "node"
	case EntityFingerprint:
		return "fingerprint"
	case EntityProduct:
		return "product"
	case EntityCertificate:
		return "certificate"
	case EntityCommand:
		return "command"
	case EntityClientID:
		return "client_id"
	case EntityMessage:
		return "message"
	case EntityEventConsumer:
		return "event consumer"
	case EntityRoutingRule:
		return "routing rule"
	case EntityRuleAction:
		return "rule action"
	case EntityFlowPolicy:
		return "flow-control policy"
	case EntityDeviceGroup:
		return "device group"
	case EntityOTAPackage:
		return "OTA package"
	case EntityFirmwareUpgrade:
		return "firmware upgrade"
	case EntityBacklogPolicy:
		return "backlog policy"
	}
	return fmt.Sprintf("Entity(%d)", uint8(e))
}
