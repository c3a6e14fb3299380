package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// alinkResponse is a platform answer as a device sees it.
type alinkResponse struct {
	ID      json.RawMessage `json:"id"`
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// request publishes an Alink request and returns the answer on its
// _reply topic.
func (c *client) request(t *testing.T, topic string, body any) alinkResponse {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	c.pub(t, topic, 1, string(b))
	m := c.next(t, 5*time.Second)
	if m.Topic() != topic+"_reply" {
		t.Fatalf("answer on %s (%s), want %s_reply", m.Topic(), m.Payload(), topic)
	}
	var r alinkResponse
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		t.Fatalf("answer %s: %v", m.Payload(), err)
	}
	return r
}

func (c *client) wantCode(t *testing.T, topic string, body any, code int) alinkResponse {
	t.Helper()
	r := c.request(t, topic, body)
	if r.Code != code {
		t.Fatalf("%s %v: code %d (%s), want %d", topic, body, r.Code, r.Message, code)
	}
	return r
}

// signed is a sub-device's signed identity as the Node SDK's signUtil
// makes it (timestamp a number, clientId pk&dn).
func signed(pk, dn, secret string) map[string]any {
	const ts = 1700000000000
	cid := pk + "&" + dn
	return map[string]any{"productKey": pk, "deviceName": dn, "clientId": cid, "timestamp": ts, "signMethod": "hmacsha1",
		"sign": aliSign("hmacsha1", secret, fmt.Sprintf("clientId%sdeviceName%sproductKey%stimestamp%d", cid, dn, pk, ts))}
}

// gatewayEnv: a GATEWAY product gwp with gateway gw1; sub-device product
// a1Hhs4E2xUG (Dynamic Registration on) with the reference's Go-sample
// device 2001 and s2; product nodyn (off) with s3.
type gatewayEnv struct {
	*env
	gw, sub, s2, s3 *registry.Device
}

const subSecret = "470c8262d6cee4bf440cf66758c2f3b8" // reference §5.3 Go sample

func newGatewayEnv(t *testing.T) *gatewayEnv {
	e := newEnv(t)
	e.aliProduct("gwp", "prodSecretGw01", false, false, registry.NodeGateway)
	e.aliProduct("a1Hhs4E2xUG", "prodSecretSub1", true, false, "")
	e.aliProduct("nodyn", "prodSecretSub2", false, false, "")
	return &gatewayEnv{env: e,
		gw:  e.aliDevice("gwp", "gw1", "secretGateway1", false),
		sub: e.aliDevice("a1Hhs4E2xUG", "2001", subSecret, false),
		s2:  e.aliDevice("a1Hhs4E2xUG", "s2", "secretSubDev02", false),
		s3:  e.aliDevice("nodyn", "s3", "secretSubDev03", false),
	}
}

func (g *gatewayEnv) connectGateway() *client {
	g.t.Helper()
	c := g.mustConnect(aliDial("gwp", "gw1", "secretGateway1", false))
	g.ready(g.gw.DeviceID)
	return c
}

const (
	subRegisterTopic = "/sys/gwp/gw1/thing/sub/register"
	topoAddTopic     = "/sys/gwp/gw1/thing/topo/add"
	loginTopic       = "/ext/session/gwp/gw1/combine/login"
	batchLoginTopic  = "/ext/session/gwp/gw1/combine/batch_login"
	logoutTopic      = "/ext/session/gwp/gw1/combine/logout"
	batchLogoutTopic = "/ext/session/gwp/gw1/combine/batch_logout"
)

func alink(id any, params any) map[string]any {
	return map[string]any{"id": id, "version": "1.0", "params": params}
}

func TestGatewaySubRegister(t *testing.T) {
	g := newGatewayEnv(t)
	ctx := context.Background()
	gw := g.connectGateway()
	name := func(pk, dn string) map[string]string { return map[string]string{"productKey": pk, "deviceName": dn} }

	r := gw.wantCode(t, subRegisterTopic, map[string]any{"id": 7, "version": "1.0", "method": "thing.sub.register",
		"params": []any{name("a1Hhs4E2xUG", "2001"), name("a1Hhs4E2xUG", "s2")}}, 200)
	var data []map[string]string
	if err := json.Unmarshal(r.Data, &data); err != nil || string(r.ID) != "7" || len(data) != 2 {
		t.Fatalf("reply %+v %v", r, err)
	}
	if data[0]["iotId"] != g.sub.DeviceID || data[0]["deviceSecret"] != subSecret || data[0]["productKey"] != "a1Hhs4E2xUG" ||
		data[0]["deviceName"] != "2001" || data[1]["deviceSecret"] != "secretSubDev02" {
		t.Fatalf("data %v", data)
	}

	// Every refusal leaves every device as it was: s4 stays registrable.
	s4 := g.aliDevice("a1Hhs4E2xUG", "s4", "secretSubDev04", false)
	cold := g.aliDevice("a1Hhs4E2xUG", "cold", "secretSubDev05", false)
	if err := g.reg.SetFrozen(ctx, g.project, cold.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	g.aliProduct("gwp2", "prodSecretGw02", false, false, registry.NodeGateway)
	gw2 := g.aliDevice("gwp2", "gw2", "secretGateway2", false)
	if _, err := g.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: g.project, ProductID: "a1Hhs4E2xUG", NodeID: "taken",
		GatewayID: gw2.DeviceID}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.reg.CreateProduct(ctx, registry.Product{ProjectID: "proj2", ProductID: "foreign", Name: "F",
		DeviceType: "x", ProtocolType: "MQTT", DynamicRegistration: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "proj2", ProductID: "foreign", NodeID: "f1"}); err != nil {
		t.Fatal(err)
	}
	tooMany := make([]any, registry.DefaultQuotas.SubDevicesPerRequest+1)
	for i := range tooMany {
		tooMany[i] = name("a1Hhs4E2xUG", fmt.Sprintf("n%d", i))
	}
	for _, tt := range []struct {
		name   string
		params any
		code   int
	}{
		{"secret delivered already", []any{name("a1Hhs4E2xUG", "s4"), name("a1Hhs4E2xUG", "2001")}, 6289},
		{"no such sub-device", []any{name("a1Hhs4E2xUG", "s4"), name("a1Hhs4E2xUG", "ghost")}, 6100},
		{"another project's device", []any{name("a1Hhs4E2xUG", "s4"), name("foreign", "f1")}, 6100},
		{"dynamic registration off", []any{name("a1Hhs4E2xUG", "s4"), name("nodyn", "s3")}, 6288},
		{"the gateway itself", []any{name("a1Hhs4E2xUG", "s4"), name("gwp", "gw1")}, 6402},
		{"attached to another gateway", []any{name("a1Hhs4E2xUG", "s4"), name("a1Hhs4E2xUG", "taken")}, 6619},
		{"frozen", []any{name("a1Hhs4E2xUG", "s4"), name("a1Hhs4E2xUG", "cold")}, 6204},
		{"named twice", []any{name("a1Hhs4E2xUG", "s4"), name("a1Hhs4E2xUG", "s4")}, 460},
		{"more than 30", tooMany, 460},
		{"none", []any{}, 460},
		{"no deviceName", []any{map[string]string{"productKey": "a1Hhs4E2xUG"}}, 460},
		{"params not an array", name("a1Hhs4E2xUG", "s4"), 460},
	} {
		t.Run(tt.name, func(t *testing.T) { gw.wantCode(t, subRegisterTopic, alink("1", tt.params), tt.code) })
	}
	gw.pub(t, subRegisterTopic, 1, "not json")
	if m := gw.next(t, 5*time.Second); !strings.Contains(string(m.Payload()), `"code":460`) {
		t.Fatalf("reply %s", m.Payload())
	}
	if d, _ := g.reg.Device(ctx, s4.DeviceID); d.DynReg != "" {
		t.Fatalf("a refused request changed s4: %q", d.DynReg)
	}
	gw.wantCode(t, subRegisterTopic, alink("2", []any{name("a1Hhs4E2xUG", "s4")}), 200)

	// A device of an ENDPOINT product is no gateway.
	ep := g.mustConnect(aliDial("a1Hhs4E2xUG", "s2", "secretSubDev02", false))
	ep.wantCode(t, "/sys/a1Hhs4E2xUG/s2/thing/sub/register", alink("3", []any{name("a1Hhs4E2xUG", "cold")}), 460)
	ep.wantCode(t, "/sys/a1Hhs4E2xUG/s2/thing/topo/add", alink("4", []any{signed("a1Hhs4E2xUG", "s4", "secretSubDev04")}), 460)
	ep.pub(t, "/ext/session/a1Hhs4E2xUG/s2/combine/login", 0, "{}") // not even its topic
	ep.none(t, 200*time.Millisecond)
}

func TestGatewayTopoLoginLogout(t *testing.T) {
	g := newGatewayEnv(t)
	ctx := context.Background()
	gw := g.connectGateway()

	// Topology add: each sub-device signs with its own secret.
	gw.wantCode(t, topoAddTopic, alink("1", []any{signed("a1Hhs4E2xUG", "2001", "wrong-secret")}), 401)
	bad := signed("a1Hhs4E2xUG", "2001", subSecret)
	bad["signMethod"] = "Sha256"
	gw.wantCode(t, topoAddTopic, alink("2", []any{bad}), 460)
	gw.wantCode(t, topoAddTopic, alink("3", []any{signed("a1Hhs4E2xUG", "ghost", subSecret)}), 6100)
	gw.wantCode(t, topoAddTopic, alink("4", []any{signed("gwp", "gw1", "secretGateway1")}), 6402)
	cold := g.aliDevice("a1Hhs4E2xUG", "cold", "secretSubDev05", false)
	if err := g.reg.SetFrozen(ctx, g.project, cold.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	gw.wantCode(t, topoAddTopic, alink("4a", []any{signed("a1Hhs4E2xUG", "cold", "secretSubDev05")}), 6204)
	g.aliProduct("gwp2", "prodSecretGw02", false, false, registry.NodeGateway)
	gw2 := g.aliDevice("gwp2", "gw2", "secretGateway2", false)
	if _, err := g.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: g.project, ProductID: "a1Hhs4E2xUG", NodeID: "taken",
		GatewayID: gw2.DeviceID, Auth: registry.AuthInfo{Secret: "secretSubDev06"}}); err != nil {
		t.Fatal(err)
	}
	gw.wantCode(t, topoAddTopic, alink("4b", []any{signed("a1Hhs4E2xUG", "taken", "secretSubDev06")}), 6619)
	// All or nothing: 2001 is not attached by a request s2 spoils.
	gw.wantCode(t, topoAddTopic, alink("5", []any{signed("a1Hhs4E2xUG", "2001", subSecret), signed("a1Hhs4E2xUG", "s2", "wrong")}), 401)
	if d, _ := g.reg.Device(ctx, g.sub.DeviceID); d.GatewayID != "" {
		t.Fatalf("a refused topo add attached 2001 to %s", d.GatewayID)
	}
	// Alibaba's documents spell the key "signmethod".
	lower := signed("a1Hhs4E2xUG", "2001", subSecret)
	lower["signmethod"] = lower["signMethod"]
	delete(lower, "signMethod")
	r := gw.wantCode(t, topoAddTopic, alink("6", []any{lower}), 200)
	if string(r.Data) != `[{"productKey":"a1Hhs4E2xUG","deviceName":"2001"}]` {
		t.Fatalf("topo add data %s", r.Data)
	}
	if d, _ := g.reg.Device(ctx, g.sub.DeviceID); d.GatewayID != g.gw.DeviceID {
		t.Fatalf("2001's gateway is %q", d.GatewayID)
	}
	gw.wantCode(t, topoAddTopic, alink("7", []any{signed("a1Hhs4E2xUG", "2001", subSecret)}), 200) // again: no change

	// Login with the reference's Go-sample sign, verbatim (timestamp a
	// string, cleanSession unsigned).
	login := map[string]any{"productKey": "a1Hhs4E2xUG", "deviceName": "2001", "clientId": "2001",
		"timestamp": "1528018257135", "signMethod": "hmacsha1", "sign": "edabfd45469dec12cf3432dd6083c58dadffb4ca", "cleanSession": "true"}
	wrong := map[string]any{}
	for k, v := range login {
		wrong[k] = v
	}
	wrong["timestamp"] = "1528018257136"
	gw.wantCode(t, loginTopic, alink("8", wrong), 6287)
	gw.wantCode(t, loginTopic, alink("9", signed("a1Hhs4E2xUG", "s2", "secretSubDev02")), 6401) // not attached
	gw.wantCode(t, loginTopic, alink("10", signed("a1Hhs4E2xUG", "ghost", "secretSubDev02")), 6100)
	gw.wantCode(t, loginTopic, alink("11", map[string]any{"productKey": "a1Hhs4E2xUG"}), 460)
	if st := g.status(g.sub.DeviceID); st != registry.StatusInactive {
		t.Fatalf("refused logins made 2001 %s", st)
	}
	r = gw.wantCode(t, loginTopic, map[string]any{"id": "12", "params": login}, 200)
	if string(r.Data) != `{"productKey":"a1Hhs4E2xUG","deviceName":"2001"}` || string(r.ID) != `"12"` {
		t.Fatalf("login reply %+v", r)
	}
	g.waitStatus(g.sub.DeviceID, registry.StatusOnline)

	// The gateway speaks for 2001 now, and only for it.
	r = gw.request(t, "/sys/a1Hhs4E2xUG/2001/thing/event/property/post", alink("13", map[string]any{"Temp": 21.5}))
	if r.Code != 200 {
		t.Fatalf("sub-device property post: %+v", r)
	}
	if sh, err := g.reg.DeviceShadow(ctx, g.project, g.sub.DeviceID); err != nil || len(sh.Services) != 1 ||
		string(sh.Services[0].Properties["Temp"]) != "21.5" {
		t.Fatalf("2001's shadow %+v %v", sh, err)
	}
	gw.pub(t, "/a1Hhs4E2xUG/2001/user/data", 1, "via gateway")
	if msgs, _ := g.reg.Messages(ctx, g.project, g.sub.DeviceID, 10); len(msgs) != 1 || string(msgs[0].Payload) != "via gateway" {
		t.Fatalf("2001's messages %+v", msgs)
	}
	if msgs, _ := g.reg.Messages(ctx, g.project, g.gw.DeviceID, 10); len(msgs) != 0 {
		t.Fatalf("the gateway got its sub-device's message: %+v", msgs)
	}
	if res := gw.sub(t, "/sys/a1Hhs4E2xUG/2001/thing/service/#", "/sys/a1Hhs4E2xUG/s2/#"); res["/sys/a1Hhs4E2xUG/2001/thing/service/#"] != 1 ||
		res["/sys/a1Hhs4E2xUG/s2/#"] != 0x80 {
		t.Fatalf("SUBACK %v", res)
	}
	denied := g.srv.Stats().DeniedPublishes
	gw.pub(t, "/a1Hhs4E2xUG/s2/user/data", 0, "not logged in")
	eventually(t, func() bool { return g.srv.Stats().DeniedPublishes == denied+1 }, "a denied publish")

	// Logout, then 520 for a sub-device not logged in.
	r = gw.wantCode(t, logoutTopic, alink("14", map[string]string{"productKey": "a1Hhs4E2xUG", "deviceName": "2001"}), 200)
	g.waitStatus(g.sub.DeviceID, registry.StatusOffline)
	gw.wantCode(t, logoutTopic, alink("15", map[string]string{"productKey": "a1Hhs4E2xUG", "deviceName": "2001"}), 520)
	gw.pub(t, "/a1Hhs4E2xUG/2001/user/data", 0, "logged out")
	eventually(t, func() bool { return g.srv.Stats().DeniedPublishes == denied+2 }, "a denied publish")

	// Batch login: all or none, sign method for the batch (C SDK 4).
	one := signed("a1Hhs4E2xUG", "2001", subSecret)
	delete(one, "signMethod")
	batch := func(list ...any) map[string]any {
		return alink("16", map[string]any{"signMethod": "hmacSha1", "deviceList": list})
	}
	gw.wantCode(t, batchLoginTopic, batch(one, signed("a1Hhs4E2xUG", "s2", "secretSubDev02")), 6401)
	if st := g.status(g.sub.DeviceID); st != registry.StatusOffline {
		t.Fatalf("a refused batch login made 2001 %s", st)
	}
	tooMany := make([]any, maxBatchLogin+1)
	for i := range tooMany {
		tooMany[i] = one
	}
	gw.wantCode(t, batchLoginTopic, batch(tooMany...), 460)
	gw.wantCode(t, batchLoginTopic, batch(one, one), 460)
	r = gw.wantCode(t, batchLoginTopic, batch(one), 200)
	if string(r.Data) != `[{"productKey":"a1Hhs4E2xUG","deviceName":"2001"}]` {
		t.Fatalf("batch login data %s", r.Data)
	}
	g.waitStatus(g.sub.DeviceID, registry.StatusOnline)
	pair := map[string]string{"productKey": "a1Hhs4E2xUG", "deviceName": "2001"}
	gw.wantCode(t, batchLogoutTopic, alink("17", []any{pair, map[string]string{"productKey": "a1Hhs4E2xUG", "deviceName": "s2"}}), 520)
	if st := g.status(g.sub.DeviceID); st != registry.StatusOnline {
		t.Fatalf("a refused batch logout made 2001 %s", st)
	}
	gw.wantCode(t, batchLogoutTopic, alink("18", []any{pair}), 200)
	g.waitStatus(g.sub.DeviceID, registry.StatusOffline)

	// The gateway's disconnection ends its sub-devices' sessions.
	gw.wantCode(t, loginTopic, alink("19", login), 200)
	g.waitStatus(g.sub.DeviceID, registry.StatusOnline)
	gw.Disconnect(0)
	g.waitStatus(g.sub.DeviceID, registry.StatusOffline)
	g.waitStatus(g.gw.DeviceID, registry.StatusOffline)
}

// Freezing or deleting a logged-in sub-device logs it out of its gateway,
// which stays connected.
func TestGatewaySubDeviceKicked(t *testing.T) {
	g := newGatewayEnv(t)
	ctx := context.Background()
	gw := g.connectGateway()
	gw.wantCode(t, topoAddTopic, alink("1", []any{signed("a1Hhs4E2xUG", "2001", subSecret)}), 200)
	gw.wantCode(t, loginTopic, alink("2", signed("a1Hhs4E2xUG", "2001", subSecret)), 200)
	g.waitStatus(g.sub.DeviceID, registry.StatusOnline)

	if err := g.reg.SetFrozen(ctx, g.project, g.sub.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	g.waitStatus(g.sub.DeviceID, registry.StatusFrozen)
	denied := g.srv.Stats().DeniedPublishes
	gw.pub(t, "/a1Hhs4E2xUG/2001/user/data", 0, "frozen")
	eventually(t, func() bool { return g.srv.Stats().DeniedPublishes == denied+1 }, "a denied publish")
	gw.wantCode(t, loginTopic, alink("3", signed("a1Hhs4E2xUG", "2001", subSecret)), 522)
	if err := g.reg.SetFrozen(ctx, g.project, g.sub.DeviceID, false); err != nil {
		t.Fatal(err)
	}
	if st := g.status(g.sub.DeviceID); st != registry.StatusOffline {
		t.Fatalf("unfrozen sub-device is %s, want OFFLINE (logged out)", st)
	}
	if st := g.status(g.gw.DeviceID); st != registry.StatusOnline {
		t.Fatalf("gateway is %s", st)
	}
}
