package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

// errRegistry answers every device lookup with err.
type errRegistry struct {
	Registry // unused methods panic
	err      error
}

func (f errRegistry) ProjectDevice(context.Context, string, string) (*registry.Device, error) {
	return nil, f.err
}

// Every kind of registry error reaches the client as its IoTDA status and
// code, decided in fromRegistry alone; an error of no known kind is an
// internal error whose detail stays in the log.
func TestRegistryErrorCodes(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
		msg    string
	}{
		{&registry.NotFoundError{Kind: registry.EntityDevice, ID: "d1"}, 404, codeDeviceNotFound, `device "d1" does not exist`},
		{&registry.NotFoundError{Kind: registry.EntityNode, ID: "n1"}, 404, codeDeviceNotFound, `node "n1" does not exist`},
		{&registry.NotFoundError{Kind: registry.EntityProduct, ID: "p"}, 404, codeProductNotFound, `product "p" does not exist`},
		{&registry.NotFoundError{Kind: registry.EntityCertificate, ID: "c"}, 404, codeCertNotFound, `certificate "c" does not exist`},
		{&registry.NotFoundError{Kind: registry.EntityCommand, ID: "x"}, 404, codeCommandNotFound, `command "x" does not exist`},
		// Wrapped, as the registry's callers may return them.
		{fmt.Errorf("lookup: %w", &registry.NotFoundError{Kind: registry.EntityProduct, ID: "p"}), 404, codeProductNotFound, `product "p" does not exist`},
		{&registry.ConflictError{Field: registry.UniqueProductID, Value: "p"}, 400, codeProductExists, `product_id "p" already exists`},
		{&registry.ConflictError{Field: registry.UniqueNodeID, Value: "n"}, 400, codeDeviceExists,
			`Invalid input. The device already exists: node_id "n" already exists`},
		{&registry.ConflictError{Field: registry.UniqueDeviceID, Value: "d"}, 400, codeDeviceExists,
			`Invalid input. The device already exists: device_id "d" already exists`},
		{&registry.ConflictError{Field: registry.UniqueFingerprint, Value: "f"}, 400, codeDeviceExists,
			`Invalid input. The device already exists: fingerprint "f" already exists`},
		{&registry.ConflictError{Field: registry.UniqueCertificate, Value: "c"}, 400, codeDeviceExists, `certificate "c" already exists`},
		{&registry.ValidationError{Field: "node_id", Reason: "is required"}, 400, codeInvalidInput, "invalid node_id: is required"},
		{fmt.Errorf("full: %w", registry.ErrQuota), 400, codeQuota, "full: quota exceeded"},
		{registry.ErrHasDevices, 400, codeHasDevices, "product still has devices"},
		{registry.ErrNotConnected, 403, codeNotOnline, "Operation not allowed. The device is not online."},
		{fmt.Errorf("send: %w", registry.ErrNodeUnreachable), 503, codeInternal,
			"Service unavailable: the node holding the device's session cannot be reached. The command was not delivered."},
		{fmt.Errorf("pgkv commit: %w", registry.ErrConflict), 503, codeInternal,
			"Service unavailable: concurrent writes to the same data kept this one from committing. Nothing was written; retry."},
		{errors.New("disk on fire"), 500, codeInternal, "Internal server error."},
	}
	for _, tt := range tests {
		s := New(Options{Registry: errRegistry{err: tt.err}, Credentials: []Credential{{ProjectID: "p1", Token: "tok1"}}})
		st, out := call(s, "tok1", "GET", "/v5/iot/p1/devices/d1", "")
		if st != tt.status || out["error_code"] != tt.code || out["error_msg"] != tt.msg {
			t.Errorf("%v: got %d %v, want %d %s %q", tt.err, st, out, tt.status, tt.code, tt.msg)
		}
	}
}
