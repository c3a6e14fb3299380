package regions

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/alisign"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// fakeRegistry is one region's devices, in memory.
type fakeRegistry struct {
	mu       sync.Mutex
	devices  map[string]*registry.Device // by id
	online   map[string]bool
	notified []string
	pushed   []Redirect
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{devices: map[string]*registry.Device{}, online: map[string]bool{}}
}

func (f *fakeRegistry) add(pk, dn, secret string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[pk+"_"+dn] = &registry.Device{ProjectID: "proj", DeviceID: pk + "_" + dn, ProductID: pk, NodeID: dn,
		Auth: registry.AuthInfo{Type: registry.AuthSecret, Secret: secret}}
}

func (f *fakeRegistry) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.devices[id] != nil
}

func (f *fakeRegistry) setOnline(id string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.online[id] = on
}

func (f *fakeRegistry) DeviceByProductNode(_ context.Context, pk, dn string) (*registry.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.devices {
		if d.ProductID == pk && d.NodeID == dn {
			c := *d
			return &c, nil
		}
	}
	return nil, &registry.NotFoundError{Kind: registry.EntityNode, ID: pk + "/" + dn}
}

func (f *fakeRegistry) Device(_ context.Context, id string) (*registry.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return nil, &registry.NotFoundError{Kind: registry.EntityDevice, ID: id}
	}
	c := *d
	c.Status = registry.StatusOffline
	if f.online[id] {
		c.Status = registry.StatusOnline
	}
	return &c, nil
}

func (f *fakeRegistry) CreateDevice(_ context.Context, n registry.NewDevice) (*registry.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devices[n.DeviceID] != nil {
		return nil, &registry.ConflictError{Field: registry.UniqueDeviceID, Value: n.DeviceID}
	}
	d := &registry.Device{ProjectID: n.ProjectID, DeviceID: n.DeviceID, ProductID: n.ProductID, NodeID: n.NodeID, Auth: n.Auth}
	f.devices[d.DeviceID] = d
	return d, nil
}

func (f *fakeRegistry) DeleteDevice(_ context.Context, project, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devices[id] == nil {
		return &registry.NotFoundError{Kind: registry.EntityDevice, ID: id}
	}
	delete(f.devices, id)
	delete(f.online, id)
	return nil
}

func (f *fakeRegistry) NotifyBootstrap(_ context.Context, d *registry.Device) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.online[d.DeviceID] {
		return registry.ErrNotConnected
	}
	f.notified = append(f.notified, d.DeviceID)
	return nil
}

func (f *fakeRegistry) PushBootstrapConfig(_ context.Context, d *registry.Device, iotID, iotToken, host string, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.online[d.DeviceID] {
		return registry.ErrNotConnected
	}
	f.pushed = append(f.pushed, Redirect{IotID: iotID, IotToken: iotToken, Host: host, Port: port})
	return nil
}

type testWorld struct {
	centre *Centre
	store  kv.Store
	regs   map[string]*fakeRegistry
	tokens map[string]*Tokens
	now    time.Time
}

func newTestWorld(t *testing.T) *testWorld {
	t.Helper()
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w := &testWorld{store: s, regs: map[string]*fakeRegistry{}, tokens: map[string]*Tokens{},
		now: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return w.now }
	var infos []RegionInfo
	for i, id := range []string{"cn", "us"} {
		w.regs[id] = newFakeRegistry()
		w.tokens[id] = NewTokens([]byte("key of "+id), 0)
		infos = append(infos, RegionInfo{ID: id, Endpoint: Endpoint{MQTTHost: id + ".example", MQTTPort: 1883 + i},
			Client: &Local{Registry: w.regs[id], Tokens: w.tokens[id], Notifier: w.regs[id], Pusher: w.regs[id],
				Endpoints: w.regs[id], Now: clock}})
	}
	w.centre, err = NewCentre(CentreOptions{Regions: infos, Directory: NewDirectory(s), Now: clock, MoveGrace: time.Minute,
		Rules: Rules{Default: "cn", List: []Rule{
			{Source: netip.MustParsePrefix("192.0.2.0/24"), Region: "us"},
			{ProductKey: "pkUS", Region: "us"},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// signed is the C SDK 3.0.1's pre-auth form for the device.
func signed(pk, dn, secret string) PreAuth {
	h, _ := alisign.Method("hmacsha256")
	proof := alisign.Proof(h, alisign.Param{Name: "clientId", Value: pk + "." + dn}, alisign.Param{Name: "deviceName", Value: dn},
		alisign.Param{Name: "productKey", Value: pk}, alisign.Param{Name: "timestamp", Value: "2524608000000"})
	p, err := ParsePreAuth(url.Values{"productKey": {pk}, "deviceName": {dn}, "signmethod": {"hmacsha256"},
		"sign": {hexUpper(hmacOf(proof, secret))}, "clientId": {pk + "." + dn}, "timestamp": {"2524608000000"}})
	if err != nil {
		panic(err)
	}
	return p
}

var (
	fromUS = netip.MustParseAddr("192.0.2.7")
	fromCN = netip.MustParseAddr("198.51.100.7")
)

func TestCentrePreAuthAssignsBySourceAndTransfers(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["cn"].add("pk1", "dev1", "s1") // made in the factory's region

	g, ep, err := w.centre.PreAuth(ctx, fromUS, signed("pk1", "dev1", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	if ep.MQTTHost != "us.example" || g.IotID != "pk1_dev1" {
		t.Fatalf("grant %+v at %+v, want us.example and iotId pk1_dev1", g, ep)
	}
	us, _ := w.regs["us"].Device(ctx, "pk1_dev1")
	if us == nil || us.Auth.Secret != "s1" {
		t.Fatal("device not transferred to its region")
	}
	if err := w.tokens["us"].Check(us, g.IotToken, w.now); err != nil {
		t.Fatalf("token not the assigned region's: %v", err)
	}
	if w.regs["cn"].has("pk1_dev1") {
		t.Error("offline device's old copy kept")
	}
	// Sticky: a later contact from another address stays in us.
	if _, ep, err := w.centre.PreAuth(ctx, fromCN, signed("pk1", "dev1", "s1")); err != nil || ep.MQTTHost != "us.example" {
		t.Fatalf("second contact: %v at %+v", err, ep)
	}
	e, err := NewDirectory(w.store).Get(ctx, "pk1", "dev1")
	if err != nil || e.Region != "us" || e.From != "" || e.DeviceID != "pk1_dev1" || e.ProjectID != "proj" {
		t.Fatalf("directory entry %+v, %v", e, err)
	}
}

func TestCentrePreAuthByProductAndRefusals(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["us"].add("pkUS", "d", "s")
	w.regs["us"].add("pkX", "d", "s")
	if _, ep, err := w.centre.PreAuth(ctx, fromCN, signed("pkUS", "d", "s")); err != nil || ep.MQTTHost != "us.example" {
		t.Fatalf("product rule: %v at %+v", err, ep)
	}

	// A wrong sign changes nothing: no assignment, no transfer.
	if _, _, err := w.centre.PreAuth(ctx, fromCN, signed("pkX", "d", "wrong")); !errors.Is(err, ErrBadSign) {
		t.Fatalf("wrong sign: %v", err)
	}
	if w.regs["cn"].has("pkX_d") {
		t.Fatal("unsigned request transferred the device")
	}
	if _, err := NewDirectory(w.store).Get(ctx, "pkX", "d"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("unsigned request assigned the device: %v", err)
	}
	if _, _, err := w.centre.PreAuth(ctx, fromCN, signed("pkX", "nobody", "s")); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("unknown device: %v", err)
	}
	w.regs["us"].devices["pkX_c"] = &registry.Device{ProjectID: "proj", DeviceID: "pkX_c", ProductID: "pkX", NodeID: "c",
		Auth: registry.AuthInfo{Type: registry.AuthCertificates}}
	if _, _, err := w.centre.PreAuth(ctx, fromCN, signed("pkX", "c", "s")); !errors.Is(err, ErrAuthType) {
		t.Fatalf("certificate device: %v", err)
	}
	w.regs["us"].add("pkX", "sub", "s")
	w.regs["us"].devices["pkX_sub"].GatewayID = "pkX_gw"
	var pe *ParamError
	if _, err := w.centre.Bootstrap(ctx, fromCN, "pkX", "sub"); !errors.As(err, &pe) {
		t.Fatalf("sub-device moved alone: %v", err)
	}
}

func TestCentreBootstrap(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["us"].add("pk1", "d", "s")
	ep, err := w.centre.Bootstrap(ctx, fromCN, "pk1", "d")
	if err != nil || ep.MQTTHost != "cn.example" {
		t.Fatalf("bootstrap: %v at %+v", err, ep)
	}
	if !w.regs["cn"].has("pk1_d") || w.regs["us"].has("pk1_d") {
		t.Fatal("bootstrap did not move the device to its rule's region")
	}
	var pe *ParamError
	if _, err := w.centre.Bootstrap(ctx, fromCN, "", "d"); !errors.As(err, &pe) {
		t.Fatalf("no productKey: %v", err)
	}
}

func TestCentreMoveOnlineDevice(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["cn"].add("pk1", "d", "s")
	if _, _, err := w.centre.PreAuth(ctx, fromCN, signed("pk1", "d", "s")); err != nil {
		t.Fatal(err)
	}
	w.regs["cn"].setOnline("pk1_d", true)

	if _, err := w.centre.Move(ctx, "proj", "pk1_d", "nowhere"); !errors.Is(err, ErrUnknownRegion) {
		t.Fatalf("unknown region: %v", err)
	}
	if _, err := w.centre.Move(ctx, "other", "pk1_d", "us"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("another project's device: %v", err)
	}
	e, err := w.centre.Move(ctx, "proj", "pk1_d", "us")
	if err != nil || e.Region != "us" || e.From != "cn" {
		t.Fatalf("move: %+v, %v", e, err)
	}
	if len(w.regs["cn"].notified) != 1 {
		t.Fatalf("online device not notified: %v", w.regs["cn"].notified)
	}
	// It was pushed its new endpoint, with an iotToken its new region
	// issued (and the old one would refuse).
	if p := w.regs["cn"].pushed; len(p) != 1 || p[0].IotID != "pk1_d" || p[0].Host != "us.example" || p[0].Port != 1884 {
		t.Fatalf("config push: %+v", p)
	}
	d, _ := w.regs["us"].DeviceByProductNode(ctx, "pk1", "d")
	if err := w.tokens["us"].Check(d, w.regs["cn"].pushed[0].IotToken, w.now); err != nil {
		t.Fatalf("the pushed token is not the new region's: %v", err)
	}
	if err := w.tokens["cn"].Check(d, w.regs["cn"].pushed[0].IotToken, w.now); err == nil {
		t.Fatal("the old region accepts the pushed token")
	}
	if !w.regs["cn"].has("pk1_d") || !w.regs["us"].has("pk1_d") {
		t.Fatal("during the move both regions hold the device")
	}
	// The device asks again: its new region answers.
	if _, ep, err := w.centre.PreAuth(ctx, fromCN, signed("pk1", "d", "s")); err != nil || ep.MQTTHost != "us.example" {
		t.Fatalf("after the move: %v at %+v", err, ep)
	}
	if err := w.centre.Sweep(ctx); err != nil || !w.regs["cn"].has("pk1_d") {
		t.Fatalf("old copy went before the device connected in its new region: %v", err)
	}
	w.regs["us"].setOnline("pk1_d", true)
	if err := w.centre.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if w.regs["cn"].has("pk1_d") {
		t.Fatal("old copy kept after the device connected in its new region")
	}
	if m, _ := NewDirectory(w.store).Moving(ctx, 10); len(m) != 0 {
		t.Fatalf("move still under way: %+v", m)
	}
}

func TestCentreMoveGrace(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["cn"].add("pk1", "d", "s")
	if _, err := w.centre.Bootstrap(ctx, fromCN, "pk1", "d"); err != nil {
		t.Fatal(err)
	}
	w.regs["cn"].setOnline("pk1_d", true)
	if _, err := w.centre.Move(ctx, "proj", "pk1_d", "us"); err != nil {
		t.Fatal(err)
	}
	w.now = w.now.Add(time.Minute)
	if err := w.centre.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if w.regs["cn"].has("pk1_d") {
		t.Fatal("old copy of a device that never left kept past the grace period")
	}
}

func huaweiLogin(id, secret string) Login {
	const ts = "2026120708"
	m := hmac.New(sha256.New, []byte(ts))
	m.Write([]byte(secret))
	return Login{DeviceID: id, Timestamp: ts, Password: hex.EncodeToString(m.Sum(nil))}
}

func TestCentreHuaweiBootstrap(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["cn"].add("pkUS", "meter1", "s1")

	if _, err := w.centre.HuaweiBootstrap(ctx, fromCN, huaweiLogin("pkUS_meter1", "wrong")); !errors.Is(err, ErrBadSign) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := NewDirectory(w.store).ByDeviceID(ctx, "pkUS_meter1"); !errors.Is(err, kv.ErrNotFound) || w.regs["us"].has("pkUS_meter1") {
		t.Fatalf("a wrong password assigned or moved the device: %v", err)
	}
	if _, err := w.centre.HuaweiBootstrap(ctx, fromCN, huaweiLogin("nobody", "s1")); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("unknown device: %v", err)
	}
	var pe *ParamError
	if _, err := w.centre.HuaweiBootstrap(ctx, fromCN, Login{DeviceID: "pkUS_meter1", Timestamp: "1", Password: "x"}); !errors.As(err, &pe) {
		t.Fatalf("malformed login: %v", err)
	}
	for range 2 { // first contact, then from the directory
		ep, err := w.centre.HuaweiBootstrap(ctx, fromCN, huaweiLogin("pkUS_meter1", "s1"))
		if err != nil || ep.MQTTHost != "us.example" {
			t.Fatalf("bootstrap: %v at %+v", err, ep)
		}
	}
	if !w.regs["us"].has("pkUS_meter1") || w.regs["cn"].has("pkUS_meter1") {
		t.Fatal("the product rule's region does not hold the device alone")
	}
	if _, err := w.centre.HuaweiBootstrap(ctx, fromCN, huaweiLogin("pkUS_meter1", "wrong")); !errors.Is(err, ErrBadSign) {
		t.Fatalf("wrong password of an assigned device: %v", err)
	}
}

// A device deleted in its region and made again elsewhere is assigned
// afresh; the centre keeps no name of a device that is gone.
func TestCentreForgetsDeletedDevices(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	dir := NewDirectory(w.store)
	w.regs["cn"].add("pk1", "d", "s")
	if _, _, err := w.centre.PreAuth(ctx, fromCN, signed("pk1", "d", "s")); err != nil {
		t.Fatal(err)
	}
	// Deleted by its operator: the pre-auth says 5001 and the name goes.
	_ = w.regs["cn"].DeleteDevice(ctx, "proj", "pk1_d")
	if _, _, err := w.centre.PreAuth(ctx, fromCN, signed("pk1", "d", "s")); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("pre-auth of a deleted device: %v", err)
	}
	if _, err := dir.Get(ctx, "pk1", "d"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("directory still names the deleted device: %v", err)
	}
	// Made again in us: a bootstrap from cn's range assigns it to cn.
	if _, _, err := w.centre.PreAuth(ctx, fromCN, signed("pk1", "d", "s")); !errors.Is(err, ErrUnknownDevice) {
		t.Fatal(err)
	}
	w.regs["us"].add("pk1", "d", "s2")
	if _, err := w.centre.Bootstrap(ctx, fromCN, "pk1", "d"); err != nil {
		t.Fatal(err)
	}
	// Deleted in cn (where the rules moved it), made again in us:
	// bootstrap notices and assigns it afresh.
	_ = w.regs["cn"].DeleteDevice(ctx, "proj", "pk1_d")
	w.regs["us"].add("pk1", "d", "s3")
	if ep, err := w.centre.Bootstrap(ctx, fromUS, "pk1", "d"); err != nil || ep.MQTTHost != "us.example" {
		t.Fatalf("bootstrap of a device made again: %v at %+v", err, ep)
	}
	// Huawei-style likewise.
	w.regs["us"].add("pk2", "m", "s")
	if _, err := w.centre.HuaweiBootstrap(ctx, fromUS, huaweiLogin("pk2_m", "s")); err != nil {
		t.Fatal(err)
	}
	_ = w.regs["us"].DeleteDevice(ctx, "proj", "pk2_m")
	if _, err := w.centre.HuaweiBootstrap(ctx, fromUS, huaweiLogin("pk2_m", "s")); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("Huawei bootstrap of a deleted device: %v", err)
	}
	if _, err := dir.ByDeviceID(ctx, "pk2_m"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("directory still names the deleted Huawei device: %v", err)
	}
}

// An offline device's old copy goes at once: it connects nowhere until
// it asks the centre again.
func TestCentreMoveOfflineDevice(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["cn"].add("pk1", "d", "s")
	if _, err := w.centre.Bootstrap(ctx, fromCN, "pk1", "d"); err != nil {
		t.Fatal(err)
	}
	e, err := w.centre.Move(ctx, "proj", "pk1_d", "us")
	if err != nil || e.From != "" || e.Region != "us" {
		t.Fatalf("move: %+v, %v", e, err)
	}
	if w.regs["cn"].has("pk1_d") || !w.regs["us"].has("pk1_d") || len(w.regs["cn"].notified) != 0 {
		t.Fatal("offline device not moved at once")
	}
	if e, err := w.centre.Move(ctx, "proj", "pk1_d", "us"); err != nil || e.Region != "us" {
		t.Fatalf("move to its own region: %+v, %v", e, err)
	}
}
