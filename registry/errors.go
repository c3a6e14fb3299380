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
	ErrQuota         = errors.New("quota exceeded")
	ErrFrozen        = errors.New("device is frozen")
	ErrClosed        = errors.New("registry is closed")
	// ErrStorageFull: the store refuses writes until space is freed;
	// nothing was written (the engine's kv.ErrFull).
	ErrStorageFull = kv.ErrFull
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
	Field string
	Value string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %q already exists", e.Field, e.Value)
}

func (e *ConflictError) Unwrap() error { return ErrAlreadyExists }

// NotFoundError says which entity is missing.
type NotFoundError struct {
	Kind string // "device", "product", "certificate"
	ID   string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q does not exist", e.Kind, e.ID) }

func (e *NotFoundError) Unwrap() error { return ErrNotFound }
