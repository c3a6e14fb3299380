package registry

import (
	"context"
	"errors"
	"testing"
)

// A gateway lists its sub-devices and detaches them, all or nothing; a
// detached device no longer counts against its quota, and the indexes
// and counters stay consistent.
func TestTopologyGetDelete(t *testing.T) {
	r := gatewayFixture(t, Quotas{SubDevicesPerGateway: 2})
	ctx := context.Background()
	if _, err := r.AttachSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "a"), pn("subp", "b")}); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		t.Helper()
		subs, err := r.SubDevicesOf(ctx, "gwp_gw")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range subs {
			out = append(out, d.NodeID)
		}
		return out
	}
	if got := names(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("sub-devices %v, want [a b]", got)
	}
	if _, err := r.SubDevicesOf(ctx, "plain_e"); !errors.Is(err, ErrNotGateway) {
		t.Fatalf("topology of a non-gateway: %v", err)
	}

	for _, tc := range []struct {
		name string
		subs []ProductNode
		want error
	}{
		{"not attached", []ProductNode{pn("subp", "a"), pn("subp", "c")}, ErrNotAttached},
		{"named twice", []ProductNode{pn("subp", "a"), pn("subp", "a")}, ErrNotAttached},
		{"another project's", []ProductNode{pn("subp", "a"), pn("foreign", "f")}, ErrNotFound},
		{"the gateway", []ProductNode{pn("gwp", "gw")}, ErrGatewayItself},
	} {
		_, err := r.DetachSubDevices(ctx, "gwp_gw", tc.subs)
		var se *SubDeviceError
		if !errors.Is(err, tc.want) || !errors.As(err, &se) {
			t.Errorf("%s: %v, want a *SubDeviceError wrapping %v", tc.name, err, tc.want)
		}
	}
	if got := names(); len(got) != 2 {
		t.Fatalf("a refused detach changed the topology: %v", got)
	}

	devs, err := r.DetachSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "a")})
	if err != nil || len(devs) != 1 || devs[0].GatewayID != "" {
		t.Fatalf("detach: %+v %v", devs, err)
	}
	if d, _ := r.Device(ctx, "subp_a"); d.GatewayID != "" {
		t.Fatalf("a is still under %q", d.GatewayID)
	}
	if got := names(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("sub-devices %v, want [b]", got)
	}
	// The freed place in the quota of 2 takes another.
	if _, err := r.AttachSubDevices(ctx, "gwp_gw", []ProductNode{pn("subp", "c")}); err != nil {
		t.Fatalf("attach after a detach: %v", err)
	}
	if problems, err := r.Check(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("check: %v %v", problems, err)
	}
}
