package registry

import (
	"context"
	"errors"
	"testing"
)

func TestAddSubDevice(t *testing.T) {
	r := gatewayFixture(t, Quotas{SubDevicesPerGateway: 2})
	ctx := context.Background()
	d, err := r.AddSubDevice(ctx, "gwp_gw", NewSubDevice{NodeID: "n1", ProductID: "plain", Name: "one",
		ExtensionInfo: []byte(`{"room":"a"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if d.DeviceID != "plain_n1" || d.GatewayID != "gwp_gw" || d.ProjectID != "p" || d.DeviceName != "one" ||
		d.Status != StatusInactive || string(d.ExtensionInfo) != `{"room":"a"}` {
		t.Fatalf("sub-device %+v", d)
	}
	if l, err := r.ListDevices(ctx, "p", DeviceFilter{GatewayID: "gwp_gw"}, Page{Limit: 10}); err != nil || len(l.Devices) != 1 {
		t.Fatalf("the gateway's sub-devices: %+v %v", l, err)
	}

	var nf *NotFoundError
	var conflict *ConflictError
	var verr *ValidationError
	for _, tc := range []struct {
		name    string
		gateway string
		n       NewSubDevice
		ok      func(error) bool
	}{
		{"not a gateway", "plain_e", NewSubDevice{NodeID: "n2", ProductID: "plain"},
			func(err error) bool { return errors.Is(err, ErrNotGateway) }},
		{"no such gateway", "nobody", NewSubDevice{NodeID: "n2", ProductID: "plain"},
			func(err error) bool { return errors.As(err, &nf) && nf.ID == "nobody" }},
		{"product of another project", "gwp_gw", NewSubDevice{NodeID: "n2", ProductID: "foreign"},
			func(err error) bool { return errors.As(err, &nf) && nf.Kind == EntityProduct }},
		{"device id taken", "gwp_gw", NewSubDevice{NodeID: "n2", ProductID: "plain", DeviceID: "subp_a"},
			func(err error) bool { return errors.As(err, &conflict) }},
		{"node id missing", "gwp_gw", NewSubDevice{ProductID: "plain"},
			func(err error) bool { return errors.As(err, &verr) && verr.Field == "node_id" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.AddSubDevice(ctx, tc.gateway, tc.n); !tc.ok(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if d, _ := r.Device(ctx, "subp_a"); d.GatewayID != "" {
		t.Fatal("a refused add changed the device it named")
	}
	if _, err := r.AddSubDevice(ctx, "gwp_gw", NewSubDevice{NodeID: "n2", ProductID: "plain", DeviceID: "second"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddSubDevice(ctx, "gwp_gw", NewSubDevice{NodeID: "n3", ProductID: "plain"}); !errors.Is(err, ErrQuota) {
		t.Fatalf("over the gateway's quota: %v", err)
	}
	if _, err := r.Device(ctx, "plain_n3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused add was written: %v", err)
	}
}

func TestSubDeviceOfAndDelete(t *testing.T) {
	r := gatewayFixture(t, Quotas{SubDevicesPerGateway: 1})
	ctx := context.Background()
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "gwp", NodeID: "gw2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddSubDevice(ctx, "gwp_gw", NewSubDevice{NodeID: "s", ProductID: "plain"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddSubDevice(ctx, "gwp_gw2", NewSubDevice{NodeID: "t", ProductID: "plain"}); err != nil {
		t.Fatal(err)
	}
	if d, err := r.SubDeviceOf(ctx, "gwp_gw", "plain_s"); err != nil || d.DeviceID != "plain_s" {
		t.Fatalf("own sub-device: %v %v", d, err)
	}
	// Another gateway's sub-device, a directly connected device, another
	// project's device and no device at all look the same to a gateway.
	for _, id := range []string{"plain_t", "plain_e", "foreign_f", "nothing"} {
		var nf *NotFoundError
		if _, err := r.SubDeviceOf(ctx, "gwp_gw", id); !errors.As(err, &nf) || nf.ID != id {
			t.Errorf("SubDeviceOf(%s): %v", id, err)
		}
		if err := r.DeleteSubDevice(ctx, "gwp_gw", id); !errors.As(err, &nf) || nf.ID != id {
			t.Errorf("DeleteSubDevice(%s): %v", id, err)
		}
	}
	if _, err := r.Device(ctx, "plain_t"); err != nil {
		t.Fatalf("another gateway's sub-device was deleted: %v", err)
	}
	if err := r.DeleteSubDevice(ctx, "gwp_gw", "plain_s"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Device(ctx, "plain_s"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted sub-device: %v", err)
	}
	// The delete gave the quota (1) back.
	if _, err := r.AddSubDevice(ctx, "gwp_gw", NewSubDevice{NodeID: "s2", ProductID: "plain"}); err != nil {
		t.Fatalf("add after the delete: %v", err)
	}
}
