package batchtask

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/iotgate/iotgate/registry"
)

// Devices is what the device kinds need of the registry
// (*registry.Registry satisfies it).
type Devices interface {
	CreateDeviceWith(ctx context.Context, n registry.NewDevice, also func(registry.Writer, *registry.Device) error) (*registry.Device, error)
	DeleteDevice(ctx context.Context, project, id string) error
	SetFrozen(ctx context.Context, project, id string, frozen bool) error
}

// DeviceKinds are the device task types: createDevices (from a file),
// deleteDevices, freezeDevices and unfreezeDevices (from targets or a
// file), over reg.
func DeviceKinds(reg Devices) []Kind {
	return []Kind{createDevices{reg}, deviceAction{reg, TypeDeleteDevices}, deviceAction{reg, TypeFreezeDevices},
		deviceAction{reg, TypeUnfreezeDevices}}
}

// The device task types.
const (
	TypeCreateDevices   = "createDevices"
	TypeDeleteDevices   = "deleteDevices"
	TypeFreezeDevices   = "freezeDevices"
	TypeUnfreezeDevices = "unfreezeDevices"
)

// transient reports whether err says an item could not be tried (the
// store, not the item, failed): it is tried again rather than failed.
func transient(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, registry.ErrUnavailable) || errors.Is(err, registry.ErrOutcomeUnknown) ||
		errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrStorageFull) || errors.Is(err, registry.ErrClosed)
}

// createColumns are the columns of IoTDA's createDevices template: the
// fields of a device creation (AddDevice), which the template's rows
// fill in one device each.
var createColumns = []string{"node_id", "product_id", "device_name", "device_id", "secret", "description",
	"gateway_id", "app_id", "auth_type", "fingerprint", "secure_access", "timeout"}

// createDevices creates a device per row of its file.
type createDevices struct{ reg Devices }

func (createDevices) Type() string { return TypeCreateDevices }

func (createDevices) CheckHeader(header []string) error {
	return checkColumns(header, createColumns, []string{"node_id", "product_id"})
}

// Plan makes an item per row: its target the row's node_id, its input
// the row's non-empty cells by column.
func (createDevices) Plan(_ context.Context, t NewTask, sheet *Sheet) ([]NewItem, error) {
	if sheet == nil {
		return nil, &registry.ValidationError{Field: "document_source", Reason: "is required for createDevices: the id of an uploaded file"}
	}
	items := make([]NewItem, 0, len(sheet.Rows))
	for _, r := range sheet.Rows {
		row := map[string]string{}
		for _, c := range sheet.Header {
			if v := sheet.Get(r, c); v != "" {
				row[c] = v
			}
		}
		in, err := json.Marshal(row)
		if err != nil {
			return nil, err
		}
		items = append(items, NewItem{Target: row["node_id"], Input: in})
	}
	return items, nil
}

// newDevice reads an item's row as a device to create.
func (createDevices) newDevice(t *Task, it *Item) (registry.NewDevice, error) {
	var row map[string]string
	if err := json.Unmarshal(it.Input, &row); err != nil {
		return registry.NewDevice{}, fmt.Errorf("corrupt row: %w", err)
	}
	n := registry.NewDevice{ProjectID: t.ProjectID, NodeID: row["node_id"], ProductID: row["product_id"],
		DeviceID: row["device_id"], DeviceName: row["device_name"], Description: row["description"],
		GatewayID: row["gateway_id"], Auth: registry.AuthInfo{Type: registry.AuthType(strings.ToUpper(row["auth_type"])),
			Secret: row["secret"], Fingerprint: row["fingerprint"]}}
	if a := row["app_id"]; a != "" && a != t.ProjectID {
		return n, &registry.ValidationError{Field: "app_id", Reason: fmt.Sprintf("must be this project's id %q: iotgate has one resource space per project", t.ProjectID)}
	}
	if v := row["secure_access"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return n, &registry.ValidationError{Field: "secure_access", Reason: "must be true or false"}
		}
		n.Auth.SecureAccess = b
	}
	if v := row["timeout"]; v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return n, &registry.ValidationError{Field: "timeout", Reason: "must be a whole number of seconds"}
		}
		n.Auth.Timeout, n.Auth.TimeoutSet = s, true
	}
	return n, nil
}

// Do creates the row's device, recording the item's success in the
// create's transaction: a crash leaves both or neither.
func (k createDevices) Do(ctx context.Context, t *Task, it *Item, rec Recorder) (Outcome, error) {
	n, err := k.newDevice(t, it)
	var ve *registry.ValidationError
	if errors.As(err, &ve) {
		return Outcome{Status: ItemFail, Err: err}, nil
	}
	if err != nil {
		return Outcome{}, err
	}
	d, err := k.reg.CreateDeviceWith(ctx, n, func(w registry.Writer, d *registry.Device) error {
		return rec.Within(w, Outcome{Status: ItemSuccess, Output: d.DeviceID})
	})
	switch {
	case err == nil:
		return Outcome{Status: ItemSuccess, Output: d.DeviceID}, nil
	case transient(ctx, err):
		return Outcome{}, err
	}
	return Outcome{Status: ItemFail, Err: err}, nil
}

// deviceAction deletes, freezes or unfreezes a device per target (a
// device id), from targets or a file's device_id column.
type deviceAction struct {
	reg Devices
	typ string
}

func (k deviceAction) Type() string { return k.typ }

func (deviceAction) CheckHeader(header []string) error {
	return checkColumns(header, []string{"device_id"}, []string{"device_id"})
}

func (deviceAction) Plan(_ context.Context, t NewTask, sheet *Sheet) ([]NewItem, error) {
	var items []NewItem
	if sheet == nil {
		for _, id := range t.Targets {
			items = append(items, NewItem{Target: id})
		}
		return items, nil
	}
	for _, r := range sheet.Rows {
		items = append(items, NewItem{Target: sheet.Get(r, "device_id")})
	}
	return items, nil
}

// Do applies the action. A delete that a crash interrupted after it
// committed is tried again and fails as "no such device": the registry
// has no transaction to record it in.
func (k deviceAction) Do(ctx context.Context, t *Task, it *Item, _ Recorder) (Outcome, error) {
	var err error
	switch {
	case it.Target == "":
		err = &registry.ValidationError{Field: "device_id", Reason: "is required"}
	case k.typ == TypeDeleteDevices:
		err = k.reg.DeleteDevice(ctx, t.ProjectID, it.Target)
	default:
		err = k.reg.SetFrozen(ctx, t.ProjectID, it.Target, k.typ == TypeFreezeDevices)
	}
	switch {
	case err == nil:
		return Outcome{Status: ItemSuccess}, nil
	case transient(ctx, err):
		return Outcome{}, err
	}
	return Outcome{Status: ItemFail, Err: err}, nil
}
