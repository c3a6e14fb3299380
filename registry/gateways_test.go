package registry

import (
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// gatewayFixture: project p with a GATEWAY product gwp (gateway gw), a
// sub-device product subp with Dynamic Registration on (a, b, c) and an
// ENDPOINT product plain (e).
func gatewayFixture(t *testing.T, q Quotas) *Registry {
	t.Helper()
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Store: s, MasterKey: make([]byte, 32), Quotas: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); s.Close() })
	ctx := context.Background()
	for _, p := range []Product{
		{ProjectID: "p", ProductID: "gwp", NodeType: NodeGateway},
		{ProjectID: "p", ProductID: "subp", DynamicRegistration: true},
		{ProjectID: "p", ProductID: "plain"},
		{ProjectID: "other", ProductID: "foreign", DynamicRegistration: true},
	} {
		p.Name, p.DeviceType, p.ProtocolType = "P", "x", "MQTT"
		if _, err := r.CreateProduct(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []NewDevice{
		{ProjectID: "p", ProductID: "gwp", NodeID: "gw"},
		{ProjectID: "p", ProductID: "subp", NodeID: "a"},
		{ProjectID: "p", ProductID: "subp", NodeID: "b"},
		{ProjectID: "p", ProductID: "subp", NodeID: "c"},
		{ProjectID: "p", ProductID: "plain", NodeID: "e"},
		{ProjectID: "other", ProductID: "foreign", NodeID: "f"},
	} {
		if _, err := r.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func pn(product, node string) ProductNode { return ProductNode{ProductID: product, NodeID: node} }

func TestRegisterSubDevices(t *testing.T) {
	r := gatewayFixture(t, Quotas{SubDevicesPerRequest: 2})
	ctx := context.Background()
	devs, err := r.RegisterSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "b"), pn("subp", "a")})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].DeviceID != "subp_b" || devs[1].DeviceID != "subp_a" || devs[0].Auth.Secret == "" {
		t.Fatalf("devices %+v", devs)
	}
	// The secret went to one physical device: HTTPS registration and a
	// second sub-device registration are refused.
	if _, err := r.DynamicRegister(ctx, "subp", "a", func(*Product) bool { return true }); !errors.Is(err, ErrAlreadyActive) {
		t.Fatalf("dynamic register after sub register: %v", err)
	}
	if err := r.SetFrozen(ctx, "p", "subp_c", true); err != nil {
		t.Fatal(err)
	}
	var sde *SubDeviceError
	for _, tt := range []struct {
		name string
		gw   string
		subs []ProductNode
		want error
	}{
		{"already delivered", "gwp_gw", []ProductNode{pn("subp", "a")}, ErrAlreadyActive},
		{"unknown", "gwp_gw", []ProductNode{pn("subp", "zz")}, ErrNotFound},
		{"another project", "gwp_gw", []ProductNode{pn("foreign", "f")}, ErrNotFound},
		{"dynamic registration off", "gwp_gw", []ProductNode{pn("plain", "e")}, ErrDynRegDisabled},
		{"itself", "gwp_gw", []ProductNode{pn("gwp", "gw")}, ErrGatewayItself},
		{"frozen", "gwp_gw", []ProductNode{pn("subp", "c")}, ErrFrozen},
		{"over the request quota", "gwp_gw", []ProductNode{pn("subp", "c"), pn("subp", "a"), pn("subp", "b")}, ErrQuota},
		{"not a gateway", "plain_e", []ProductNode{pn("subp", "c")}, ErrNotGateway},
	} {
		if _, err := r.RegisterSubDevices(ctx, tt.gw, tt.subs); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := r.RegisterSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "zz")}); !errors.As(err, &sde) || sde.Sub != pn("subp", "zz") {
		t.Fatalf("error does not name the sub-device: %v", err)
	}
	if _, err := r.RegisterSubDevices(ctx, "gwp_gw", nil); err == nil {
		t.Fatal("an empty request was accepted")
	}
	// All or nothing: c is refused (frozen), so d stays unregistered.
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "subp", NodeID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RegisterSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "d"), pn("subp", "c")}); !errors.Is(err, ErrFrozen) {
		t.Fatal(err)
	}
	if _, err := r.RegisterSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "d"), pn("subp", "d")}); err == nil {
		t.Fatal("a sub-device named twice was accepted")
	}
	if d, _ := r.Device(ctx, "subp_d"); d.DynReg != "" {
		t.Fatalf("refused requests changed d: %q", d.DynReg)
	}
	// A sub-device attached to another gateway belongs to that one.
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "gwp", NodeID: "gw2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AttachSubDevices(ctx, "gwp_gw2", []ProductNode{pn("subp", "d")}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RegisterSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "d")}); !errors.Is(err, ErrOtherGateway) {
		t.Fatalf("another gateway's sub-device: %v", err)
	}
	if _, err := r.RegisterSubDevices(ctx, "gwp_gw2", []ProductNode{pn("subp", "d")}); err != nil {
		t.Fatalf("its own gateway: %v", err)
	}
}

func TestAttachSubDevices(t *testing.T) {
	r := gatewayFixture(t, Quotas{SubDevicesPerGateway: 2})
	ctx := context.Background()
	devs, err := r.AttachSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "a"), pn("plain", "e"), pn("subp", "a")})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 3 || devs[0].GatewayID != "gwp_gw" || devs[1].GatewayID != "gwp_gw" {
		t.Fatalf("devices %+v", devs)
	}
	l, err := r.ListDevices(ctx, "p", DeviceFilter{GatewayID: "gwp_gw"}, Page{Limit: 10})
	if err != nil || len(l.Devices) != 2 {
		t.Fatalf("the gateway's sub-devices: %+v %v", l, err)
	}
	// Attaching again changes nothing; the quota (2) is full.
	if _, err := r.AttachSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AttachSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "b")}); !errors.Is(err, ErrQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if d, _ := r.Device(ctx, "subp_b"); d.GatewayID != "" {
		t.Fatal("a refused attach was written")
	}
	// Sub-devices created over REST with gateway_id count against the
	// same quota, and so does deleting one free a place.
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "subp", NodeID: "x", GatewayID: "gwp_gw"}); !errors.Is(err, ErrQuota) {
		t.Fatalf("REST sub-device over quota: %v", err)
	}
	if err := r.DeleteDevice(ctx, "p", "gwp_gw"); err == nil {
		t.Fatal("a gateway with attached sub-devices was deleted")
	}
	if err := r.DeleteDevice(ctx, "p", "plain_e"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AttachSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "b")}); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
	for _, tt := range []struct {
		name string
		gw   string
		subs []ProductNode
		want error
	}{
		{"itself", "gwp_gw", []ProductNode{pn("gwp", "gw")}, ErrGatewayItself},
		{"unknown", "gwp_gw", []ProductNode{pn("subp", "zz")}, ErrNotFound},
		{"another project", "gwp_gw", []ProductNode{pn("foreign", "f")}, ErrNotFound},
		{"not a gateway", "subp_c", []ProductNode{pn("subp", "c")}, ErrNotGateway},
	} {
		if _, err := r.AttachSubDevices(ctx, tt.gw, tt.subs); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "gwp", NodeID: "gw2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AttachSubDevices(ctx, "gwp_gw2", []ProductNode{pn("subp", "a")}); !errors.Is(err, ErrOtherGateway) {
		t.Fatalf("another gateway's sub-device: %v", err)
	}
	// A gateway with sub-devices cannot become a sub-device.
	var verr *ValidationError
	if _, err := r.AttachSubDevices(ctx, "gwp_gw2", []ProductNode{pn("gwp", "gw")}); !errors.As(err, &verr) {
		t.Fatalf("nesting a gateway with sub-devices: %v", err)
	}
}
