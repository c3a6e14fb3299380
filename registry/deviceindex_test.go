package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// storeKeys returns every key in the store, by family ("d", "#p"...).
func storeKeys(t *testing.T, s kv.Store) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	err := s.View(context.Background(), func(rd Reader) error {
		return rd.Scan(nil, nil, false, func(k, _ []byte) (bool, error) {
			family, _, _ := cutPart(string(k))
			keys[family] = append(keys[family], string(k))
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// Deleting a device removes every key its creation and its life wrote,
// whatever its kind, by DeleteDevice or by the expiry sweep; what belongs
// to another device (a CoAP device's platform-wide node id that an MQTT
// device shares) stays.
func TestDeleteLeavesNoKeyBehind(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r, s := newTestRegistry(t, clock)
	ctx := context.Background()
	mustProduct(t, r, "proj", "coapp", "CoAP")
	mustProduct(t, r, "proj", "mqttp", "MQTT")
	if _, err := r.CreateProduct(ctx, Product{ProjectID: "proj", ProductID: "gwp", Name: "GW", DeviceType: "Gateway",
		ProtocolType: "MQTT", NodeType: NodeGateway}); err != nil {
		t.Fatal(err)
	}
	before := storeKeys(t, s)

	fp, fp2 := strings.Repeat("ab", 20), strings.Repeat("cd", 32)
	for _, n := range []NewDevice{
		{NodeID: "imei1", ProductID: "coapp", Auth: AuthInfo{Timeout: 60}}, // deleted by the sweep
		{NodeID: "imei2", ProductID: "coapp"},
		{NodeID: "imei2", ProductID: "mqttp"}, // shares the CoAP device's node id
		{NodeID: "m1", ProductID: "mqttp"},
		{NodeID: "x1", ProductID: "mqttp", Auth: AuthInfo{Type: AuthCertificates, Fingerprint: fp}},
		{NodeID: "gw1", ProductID: "gwp"},
		{NodeID: "sub1", ProductID: "mqttp", GatewayID: "gwp_gw1"},
		{NodeID: "sub2", ProductID: "mqttp"}, // attached by the gateway below
	} {
		n.ProjectID = "proj"
		if _, err := r.CreateDevice(ctx, n); err != nil {
			t.Fatalf("create %s/%s: %v", n.ProductID, n.NodeID, err)
		}
	}
	// What devices write after their creation: a secondary fingerprint, a
	// gateway attachment, a status time, messages, a shadow, commands.
	if _, err := r.ResetFingerprint(ctx, "proj", "mqttp_x1", Secondary, fp2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AttachSubDevices(ctx, "gwp_gw1", []ProductNode{{ProductID: "mqttp", NodeID: "sub2"}}); err != nil {
		t.Fatal(err)
	}
	sess, err := r.Connected(ctx, "mqttp_m1")
	if err != nil {
		t.Fatal(err)
	}
	r.Disconnected("mqttp_m1", sess)
	if err := r.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"mqttp_m1", "coapp_imei1"} {
		if err := r.AddMessage(ctx, id, Message{MessageID: "m", Payload: []byte("hi"), Time: clock.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := r.ReportProperties(ctx, id, []ServiceProperties{{ServiceID: "s",
			Properties: map[string]json.RawMessage{"v": json.RawMessage("1")}, EventTime: clock.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"coapp_imei1", "coapp_imei2"} {
		if _, err := r.CreateAsyncCommand(ctx, "proj", id, NewAsyncCommand{ServiceID: "LwM2M", CommandName: "READ",
			Paras: json.RawMessage(`{"path":"/3/0/0"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Every family a device owns is there, so the test below can fail.
	created := storeKeys(t, s)
	for _, family := range []string{"d", "n", "m", "f", "l", "q", "g", "x", "#", "#p", "#g", "t", "u", "#u", "s", "a", "al", "ap", "#a"} {
		if len(created[family]) <= len(before[family]) {
			t.Errorf("no %q key after the creates: %q", family, created[family])
		}
	}

	mustDelete := func(id string) {
		t.Helper()
		if err := r.DeleteDevice(ctx, "proj", id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	mustDelete("mqttp_imei2")
	if d, err := r.DeviceByNodeID(ctx, "imei2"); err != nil || d.DeviceID != "coapp_imei2" {
		t.Fatalf("the CoAP device's node index went with the MQTT device's: %v %v", d, err)
	}
	for _, id := range []string{"coapp_imei2", "mqttp_m1", "mqttp_x1", "mqttp_sub1", "mqttp_sub2", "gwp_gw1"} {
		mustDelete(id)
	}
	clock.Advance(time.Minute)
	if n, err := r.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("sweep deleted %d: %v", n, err)
	}

	after := storeKeys(t, s)
	for family, keys := range after {
		if family == famEventStream || family == famEvent {
			continue // the event stream is history, trimmed by its own bounds
		}
		if !slices.Equal(keys, before[family]) {
			t.Errorf("family %q: %q left behind (before the creates: %q)", family, keys, before[family])
		}
	}
	for family, keys := range before {
		if len(after[family]) == 0 {
			t.Errorf("family %q: %q gone", family, keys)
		}
	}
}

// Check finds the store consistent after creates, changes and deletes of
// every kind of device, and names each disagreement a broken write would
// leave: an index entry missing or left behind, a counter off.
func TestCheckFindsDisagreements(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	mustProduct(t, r, "proj", "mq", "MQTT")
	for _, n := range []NewDevice{
		{ProjectID: "proj", ProductID: "nb", NodeID: "imei1", Auth: AuthInfo{Secret: "00112233445566778899aabbccddeeff", Timeout: 600}},
		{ProjectID: "proj", ProductID: "mq", NodeID: "gw"},
		{ProjectID: "proj", ProductID: "mq", NodeID: "x509", Auth: AuthInfo{Type: AuthCertificates, Fingerprint: strings.Repeat("ab", 32)}},
	} {
		if _, err := r.CreateDevice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "mq", NodeID: "sub", GatewayID: "mq_gw"}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteDevice(ctx, "proj", "mq_x509"); err != nil {
		t.Fatal(err)
	}
	if problems, err := r.Check(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("a consistent store: %v %v", problems, err)
	}
	// Break it the ways a torn write would.
	if err := s.Update(ctx, func(w kv.Txn) error {
		if err := w.Delete(nodeKey("imei1")); err != nil { // a missing index entry
			return err
		}
		if err := w.Set(productNodeKey("mq", "ghost"), []byte("mq_ghost")); err != nil { // an orphan
			return err
		}
		return addCount(w, productCountKey("mq"), 1) // a counter off
	}); err != nil {
		t.Fatal(err)
	}
	problems, err := r.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(problems)
	for _, want := range []string{`n\x00imei1`, "missing", `m\x00mq\x00ghost`, "no device owns", "counter says 3 devices, 2 found"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %s lack %q", got, want)
		}
	}
	if len(problems) != 3 {
		t.Errorf("%d problems, want 3: %s", len(problems), got)
	}
}
