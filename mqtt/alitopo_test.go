package mqtt

import (
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// A gateway reads its topology and detaches sub-devices, all or none; a
// detached sub-device it had logged in is logged out and its topics are
// no longer the gateway's.
func TestGatewayTopoGetDelete(t *testing.T) {
	g := newGatewayEnv(t)
	gw := g.connectGateway()
	const (
		getTopic    = "/sys/gwp/gw1/thing/topo/get"
		deleteTopic = "/sys/gwp/gw1/thing/topo/delete"
	)
	if r := gw.wantCode(t, getTopic, alink("1", map[string]any{}), 200); string(r.Data) != "[]" {
		t.Fatalf("empty topology %s", r.Data)
	}
	gw.wantCode(t, topoAddTopic, alink("2", []any{signed("a1Hhs4E2xUG", "2001", subSecret), signed("a1Hhs4E2xUG", "s2", "secretSubDev02")}), 200)
	gw.wantCode(t, loginTopic, alink("3", signed("a1Hhs4E2xUG", "2001", subSecret)), 200)
	g.waitStatus(g.sub.DeviceID, registry.StatusOnline)
	r := gw.wantCode(t, getTopic, alink("4", map[string]any{}), 200)
	if string(r.Data) != `[{"productKey":"a1Hhs4E2xUG","deviceName":"2001"},{"productKey":"a1Hhs4E2xUG","deviceName":"s2"}]` {
		t.Fatalf("topology %s", r.Data)
	}

	// All or none: s3 is not attached, so 2001 stays.
	gw.wantCode(t, deleteTopic, alink("5", []any{map[string]any{"productKey": "a1Hhs4E2xUG", "deviceName": "2001"},
		map[string]any{"productKey": "nodyn", "deviceName": "s3"}}), 6401)
	gw.wantCode(t, deleteTopic, alink("6", []any{map[string]any{"productKey": "a1Hhs4E2xUG", "deviceName": "ghost"}}), 6100)
	gw.wantCode(t, deleteTopic, alink("7", []any{map[string]any{"productKey": "a1Hhs4E2xUG"}}), 460)
	gw.wantCode(t, deleteTopic, alink("8", []any{}), 460)
	if st := g.status(g.sub.DeviceID); st != registry.StatusOnline {
		t.Fatalf("2001 after refused deletes: %s", st)
	}

	r = gw.wantCode(t, deleteTopic, alink("9", []any{map[string]any{"productKey": "a1Hhs4E2xUG", "deviceName": "2001"}}), 200)
	if string(r.Data) != `[{"productKey":"a1Hhs4E2xUG","deviceName":"2001"}]` {
		t.Fatalf("delete data %s", r.Data)
	}
	g.waitStatus(g.sub.DeviceID, registry.StatusOffline)
	if d, _ := g.reg.Device(t.Context(), g.sub.DeviceID); d.GatewayID != "" {
		t.Fatalf("2001 still under %q", d.GatewayID)
	}
	denied := g.srv.Stats().DeniedPublishes
	gw.pub(t, "/a1Hhs4E2xUG/2001/user/data", 0, "no longer mine")
	eventually(t, func() bool { return g.srv.Stats().DeniedPublishes == denied+1 }, "a denied publish")
	r = gw.wantCode(t, getTopic, alink("10", map[string]any{}), 200)
	if string(r.Data) != `[{"productKey":"a1Hhs4E2xUG","deviceName":"s2"}]` {
		t.Fatalf("topology after the delete %s", r.Data)
	}
	gw.none(t, 100*time.Millisecond)
}
