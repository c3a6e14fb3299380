package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestRegistry(t testing.TB, clock *fakeClock) (*Registry, kv.Store) {
	t.Helper()
	return newTestRegistryOn(t, clock, func(s kv.Store) kv.Store { return s })
}

// newTestRegistryOn is newTestRegistry on wrap(the in-memory store); it
// returns the store wrap returned.
func newTestRegistryOn(t testing.TB, clock *fakeClock, wrap func(kv.Store) kv.Store) (*Registry, kv.Store) {
	t.Helper()
	base, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	s := wrap(base)
	o := Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32)}
	if clock != nil {
		o.Now = clock.Now
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); base.Close() })
	return r, s
}

func mustProduct(t testing.TB, r *Registry, project, id, protocol string) {
	t.Helper()
	if _, err := r.CreateProduct(context.Background(), Product{ProjectID: project, ProductID: id, Name: "P " + id,
		DeviceType: "Meter", ProtocolType: protocol}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateDeviceValidation(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	mustProduct(t, r, "proj", "mqttp", "MQTT")
	mustProduct(t, r, "proj", "coapp", "CoAP")
	long := strings.Repeat("a", 65)
	for _, tc := range []struct {
		name  string
		in    NewDevice
		field string // "" = success
	}{
		{"ok defaults", NewDevice{NodeID: "n1", ProductID: "mqttp"}, ""},
		{"missing node", NewDevice{ProductID: "mqttp"}, "node_id"},
		{"node too long", NewDevice{NodeID: long, ProductID: "mqttp"}, "node_id"},
		{"node bad char", NewDevice{NodeID: "a b", ProductID: "mqttp"}, "node_id"},
		{"device id bad char", NewDevice{DeviceID: "x/y", NodeID: "n2", ProductID: "mqttp"}, "device_id"},
		{"name bad char", NewDevice{NodeID: "n3", ProductID: "mqttp", DeviceName: "a<b"}, "device_name"},
		{"secret too short", NewDevice{NodeID: "n4", ProductID: "mqttp", Auth: AuthInfo{Secret: "short"}}, "auth_info.secret"},
		{"coap secret not hex", NewDevice{NodeID: "n5", ProductID: "coapp", Auth: AuthInfo{Secret: "not-hex-secret"}}, "auth_info.secret"},
		{"bad auth type", NewDevice{NodeID: "n6", ProductID: "mqttp", Auth: AuthInfo{Type: "PSK"}}, "auth_info.auth_type"},
		{"bad fingerprint", NewDevice{NodeID: "n7", ProductID: "mqttp", Auth: AuthInfo{Type: AuthCertificates, Fingerprint: "abc"}}, "auth_info.fingerprint"},
		{"negative timeout", NewDevice{NodeID: "n8", ProductID: "mqttp", Auth: AuthInfo{Timeout: -1}}, "auth_info.timeout"},
		{"extension not object", NewDevice{NodeID: "n9", ProductID: "mqttp", ExtensionInfo: []byte(`[1]`)}, "extension_info"},
		{"unknown gateway", NewDevice{NodeID: "n10", ProductID: "mqttp", GatewayID: "nope"}, "gateway_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.ProjectID = "proj"
			d, err := r.CreateDevice(context.Background(), tc.in)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.DeviceID != "mqttp_n1" || len(d.Auth.Secret) != 32 || d.Auth.Type != AuthSecret || d.Status != StatusInactive {
					t.Fatalf("defaults not applied: %+v", d)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("want invalid %s, got %v", tc.field, err)
			}
		})
	}
	// Nothing of the refused devices was written.
	l, err := r.ListDevices(context.Background(), "proj", DeviceFilter{}, Page{Limit: 50})
	if err != nil || l.Count != 1 || len(l.Devices) != 1 {
		t.Fatalf("want exactly one device stored, got %d (%v)", l.Count, err)
	}
}

func TestUniquenessAndLookups(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	mustProduct(t, r, "proj", "m2", "MQTT")
	mustProduct(t, r, "proj", "c1", "CoAP")
	mustProduct(t, r, "proj", "c2", "CoAP")
	fp := strings.Repeat("AB", 20)
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "imei1", ProductID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "dev1", ProductID: "m1",
		Auth: AuthInfo{Type: AuthCertificates, Fingerprint: fp}}); err != nil {
		t.Fatal(err)
	}
	conflicts := []struct {
		name  string
		in    NewDevice
		field UniqueField
	}{
		{"same node same product", NewDevice{NodeID: "dev1", ProductID: "m1", DeviceID: "other"}, UniqueNodeID},
		{"same device id", NewDevice{NodeID: "zzz", ProductID: "m2", DeviceID: "m1_dev1"}, UniqueDeviceID},
		{"coap node is platform-wide", NewDevice{NodeID: "imei1", ProductID: "c2"}, UniqueNodeID},
		{"fingerprint taken", NewDevice{NodeID: "dev9", ProductID: "m2", Auth: AuthInfo{Type: AuthCertificates, Fingerprint: strings.ToLower(fp)}}, UniqueFingerprint},
	}
	for _, tc := range conflicts {
		tc.in.ProjectID = "proj"
		var ce *ConflictError
		if _, err := r.CreateDevice(ctx, tc.in); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: want conflict on %s, got %v", tc.name, tc.field, err)
		}
	}
	// A non-CoAP product may reuse a node id of another product.
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "dev1", ProductID: "m2"}); err != nil {
		t.Fatalf("node id in another MQTT product: %v", err)
	}
	if d, err := r.DeviceByNodeID(ctx, "imei1"); err != nil || d.DeviceID != "c1_imei1" {
		t.Fatalf("DeviceByNodeID: %v %v", d, err)
	}
	if _, err := r.DeviceByNodeID(ctx, "dev1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MQTT devices are not in the platform-wide node index: %v", err)
	}
	if d, err := r.DeviceByProductNode(ctx, "m2", "dev1"); err != nil || d.DeviceID != "m2_dev1" {
		t.Fatalf("DeviceByProductNode: %v %v", d, err)
	}
	if d, err := r.DeviceByFingerprint(ctx, strings.ToLower(fp)); err != nil || d.DeviceID != "m1_dev1" {
		t.Fatalf("DeviceByFingerprint: %v %v", d, err)
	}
	// Tenants are isolated.
	if _, err := r.ProjectDevice(ctx, "other", "m1_dev1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other project sees the device: %v", err)
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "other", NodeID: "x", ProductID: "m1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other project used the product: %v", err)
	}
}

func TestDeleteRemovesEveryIndex(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "c1", "CoAP")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "node77", ProductID: "c1",
		Auth: AuthInfo{Timeout: 3600}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	s1, err := r.Connected(ctx, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	r.Disconnected(d.DeviceID, s1)
	if err := r.flushStatus(ctx); err != nil { // writes the status-time key
		t.Fatal(err)
	}
	if err := r.DeleteProduct(ctx, "proj", "c1"); !errors.Is(err, ErrHasDevices) {
		t.Fatalf("product with devices deleted: %v", err)
	}
	if err := r.DeleteDevice(ctx, "proj", d.DeviceID); err != nil {
		t.Fatal(err)
	}
	// Only the product and its listing entry may remain, and the device's
	// events: the stream is history, trimmed by its own bounds.
	_ = s.View(context.Background(), func(rd Reader) error {
		return rd.Scan(nil, nil, false, func(k, v []byte) (bool, error) {
			if !bytes.HasPrefix(k, []byte("p\x00")) && !bytes.HasPrefix(k, []byte("k\x00")) &&
				!bytes.HasPrefix(k, eventStreamPrefix) && !bytes.HasPrefix(k, []byte("ep\x00")) {
				t.Errorf("left behind after delete: %q", k)
			}
			return true, nil
		})
	})
	if err := r.DeleteProduct(ctx, "proj", "c1"); err != nil {
		t.Fatalf("delete empty product: %v", err)
	}
	// The node id can be registered again.
	mustProduct(t, r, "proj", "c2", "CoAP")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "node77", ProductID: "c2"}); err != nil {
		t.Fatal(err)
	}
}

func TestSecretsSealedAtRest(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1", Auth: AuthInfo{Secret: "plaintext-secret-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ResetSecret(ctx, "proj", d.DeviceID, Secondary, "second-secret-22", false); err != nil {
		t.Fatal(err)
	}
	_ = s.View(context.Background(), func(rd Reader) error {
		return rd.Scan(nil, nil, false, func(k, v []byte) (bool, error) {
			if bytes.Contains(v, []byte("plaintext-secret-1")) || bytes.Contains(v, []byte("second-secret-22")) {
				t.Errorf("secret stored in plaintext under %q", k)
			}
			return true, nil
		})
	})
	got, err := r.Device(ctx, d.DeviceID)
	if err != nil || got.Auth.Secret != "plaintext-secret-1" || got.Auth.SecondarySecret != "second-secret-22" {
		t.Fatalf("secrets do not round-trip: %v %+v", err, got)
	}
	// A record sealed under another key does not open.
	other, _ := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{8}, 32)})
	defer other.Close()
	if _, err := other.Device(ctx, d.DeviceID); err == nil {
		t.Fatal("device opened with the wrong master key")
	}
}

func TestExpirySweep(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	mk := func(node string, timeout int64) string {
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: node, ProductID: "m1", Auth: AuthInfo{Timeout: timeout}})
		if err != nil {
			t.Fatal(err)
		}
		return d.DeviceID
	}
	never := mk("never", 0)
	soon := mk("soon", 10)
	later := mk("later", 100)
	connects := mk("connects", 10)
	if _, err := r.Connected(ctx, connects); err != nil {
		t.Fatal(err)
	}
	clock.Advance(9 * time.Second)
	if n, err := r.SweepExpired(ctx); err != nil || n != 0 {
		t.Fatalf("swept %d before any deadline (%v)", n, err)
	}
	clock.Advance(2 * time.Second)
	if n, err := r.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("want 1 expired, got %d (%v)", n, err)
	}
	for id, want := range map[string]bool{never: true, soon: false, later: true, connects: true} {
		_, err := r.Device(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("%s exists=%v, want %v (%v)", id, got, want, err)
		}
	}
	d, _ := r.Device(ctx, connects)
	if d.Status != StatusOnline || d.ActiveTime.IsZero() || !d.ExpireAt.IsZero() {
		t.Fatalf("connected device not activated: %+v", d)
	}
	// The node id of the expired device is free again.
	mk("soon", 0)
}

func TestConnectedLifecycle(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, _ := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1"})
	s1, err := r.Connected(ctx, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := r.Connected(ctx, d.DeviceID) // takeover
	if err != nil {
		t.Fatal(err)
	}
	if !r.Disconnected(d.DeviceID, s1) { // the old connection's late close
		t.Fatal("the old session's end did not report the newer session")
	}
	if got, _ := r.Device(ctx, d.DeviceID); got.Status != StatusOnline {
		t.Fatalf("old session's disconnect took the new one offline: %s", got.Status)
	}
	before := time.Now()
	if r.Disconnected(d.DeviceID, s2) {
		t.Fatal("the current session's end reported a newer one")
	}
	if got, _ := r.Device(ctx, d.DeviceID); got.Status != StatusOffline {
		t.Fatalf("want OFFLINE, got %s", got.Status)
	}
	if r.Disconnected(d.DeviceID, s1) {
		t.Fatal("an end with no session current reported a newer one")
	}
	if err := r.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.ProjectDevice(ctx, "proj", d.DeviceID); got.StatusTime.Before(before) {
		t.Fatalf("persisted status time %v is older than the disconnect at %v", got.StatusTime, before)
	}
	if err := r.SetFrozen(ctx, "proj", d.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Connected(ctx, d.DeviceID); !errors.Is(err, ErrFrozen) {
		t.Fatalf("frozen device connected: %v", err)
	}
	if got, _ := r.Device(ctx, d.DeviceID); got.Status != StatusFrozen {
		t.Fatalf("want FROZEN, got %s", got.Status)
	}
	if err := r.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestGroupCommitIsolatesFailures runs many concurrent creates, half of
// them duplicates, so failing and succeeding writes share batches: every
// success must be stored and no failure may leave anything behind.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	const n = 400
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := map[string]int{}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			node := fmt.Sprintf("node-%d", i/2) // every node id twice
			d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: node, ProductID: "m1", DeviceID: fmt.Sprintf("dev-%d", i)})
			if err == nil {
				mu.Lock()
				ok[d.NodeID]++
				mu.Unlock()
			} else if !errors.Is(err, ErrAlreadyExists) {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if len(ok) != n/2 {
		t.Fatalf("want %d distinct successes, got %d", n/2, len(ok))
	}
	for node, c := range ok {
		if c != 1 {
			t.Fatalf("node %s created %d times", node, c)
		}
	}
	l, err := r.ListDevices(ctx, "proj", DeviceFilter{}, Page{Limit: 50})
	if err != nil || l.Count != n/2 {
		t.Fatalf("count %d, want %d (%v)", l.Count, n/2, err)
	}
}

func TestListPaging(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "a", "MQTT")
	mustProduct(t, r, "proj", "b", "MQTT")
	for i := 0; i < 25; i++ {
		p := "a"
		if i%5 == 0 {
			p = "b"
		}
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: fmt.Sprintf("n%02d", i), ProductID: p, DeviceName: fmt.Sprintf("name%d", i%3)}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	pg := Page{Limit: 10}
	for {
		l, err := r.ListDevices(ctx, "proj", DeviceFilter{}, pg)
		if err != nil {
			t.Fatal(err)
		}
		if l.Count != 25 {
			t.Fatalf("count %d", l.Count)
		}
		for _, d := range l.Devices {
			seen = append(seen, d.NodeID)
		}
		if len(l.Devices) < pg.Limit {
			break
		}
		pg.Marker = l.Marker
	}
	if len(seen) != 25 || seen[0] != "n24" || seen[24] != "n00" {
		t.Fatalf("paging newest first over all: %v", seen)
	}
	for _, tc := range []struct {
		f    DeviceFilter
		pg   Page
		want int
		cnt  int64
	}{
		{DeviceFilter{ProductID: "b"}, Page{Limit: 50}, 5, 5},
		{DeviceFilter{ProductID: "a", DeviceName: "name1"}, Page{Limit: 50}, 7, 7},
		{DeviceFilter{NodeID: "n07"}, Page{Limit: 50}, 1, 1},
		{DeviceFilter{}, Page{Limit: 50, Offset: 20}, 5, 25},
		{DeviceFilter{ProductID: "nope"}, Page{Limit: 50}, 0, 0},
	} {
		l, err := r.ListDevices(ctx, "proj", tc.f, tc.pg)
		if err != nil || len(l.Devices) != tc.want || l.Count != tc.cnt {
			t.Errorf("%+v %+v: got %d devices, count %d (%v); want %d, %d", tc.f, tc.pg, len(l.Devices), l.Count, err, tc.want, tc.cnt)
		}
	}
	if l, _ := r.ListDevices(ctx, "other", DeviceFilter{ProductID: "a"}, Page{Limit: 50}); l.Count != 0 || len(l.Devices) != 0 {
		t.Fatalf("another project lists our devices: %+v", l)
	}
}

func TestMessagesKeepNewest(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, _ := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1"})
	for i := 0; i < MessagesKept+15; i++ {
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := r.Messages(ctx, "proj", d.DeviceID, 1000)
	if err != nil || len(msgs) != MessagesKept || string(msgs[0].Payload) != fmt.Sprint(MessagesKept+14) ||
		string(msgs[MessagesKept-1].Payload) != "15" {
		t.Fatalf("got %d messages (%v), first %q", len(msgs), err, msgs[0].Payload)
	}
}

// TestCacheNeverServesStaleAfterAck: readers race with writers; once a
// write is acknowledged, every later read sees it.
func TestCacheNeverServesStaleAfterAck(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, _ := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1"})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = r.Device(ctx, d.DeviceID)
					_, _ = r.DeviceByProductNode(ctx, "m1", "n")
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		secret := fmt.Sprintf("secret-%08d", i)
		if _, err := r.ResetSecret(ctx, "proj", d.DeviceID, Primary, secret, false); err != nil {
			t.Fatal(err)
		}
		got, err := r.Device(ctx, d.DeviceID)
		if err != nil || got.Auth.Secret != secret {
			t.Fatalf("after ack of %s read %v (%v)", secret, got.Auth.Secret, err)
		}
		got, err = r.DeviceByProductNode(ctx, "m1", "n")
		if err != nil || got.Auth.Secret != secret {
			t.Fatalf("index lookup after ack of %s read %v (%v)", secret, got.Auth.Secret, err)
		}
	}
	close(stop)
	wg.Wait()
	if err := r.DeleteDevice(ctx, "proj", d.DeviceID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.DeviceByProductNode(ctx, "m1", "n"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted device still found through the cache: %v", err)
	}
}

// TestLargeWritesSplitCommits: many concurrent 1 MB messages would exceed
// one Badger transaction; they must all be stored, in several commits.
func TestLargeWritesSplitCommits(t *testing.T) {
	s, err := badgerkv.Open(badgerkv.Options{Dir: t.TempDir(), Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := New(Options{Store: s, MasterKey: make([]byte, 32)})
	defer func() { r.Close(); s.Close() }()
	ctx := context.Background()
	mustProduct(t, r, "p", "m", "MQTT")
	var ids []string
	for i := 0; i < 4; i++ {
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: fmt.Sprint("n", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.DeviceID)
	}
	big := bytes.Repeat([]byte("x"), 700<<10) // ~930 KB of JSON: under the value-log threshold, so it counts fully
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- r.AddMessage(ctx, ids[i%len(ids)], Message{Payload: big})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("large message refused: %v", err)
		}
	}
	for _, id := range ids {
		msgs, err := r.Messages(ctx, "p", id, 100)
		if err != nil || len(msgs) != 10 || len(msgs[0].Payload) != len(big) {
			t.Fatalf("%s: %d messages (%v)", id, len(msgs), err)
		}
	}
}

// A create reads its product before it is queued for the commit; a change
// of the product committed in between (here: in the same batch, just
// before it) must still decide the create.
func TestCreateDeviceSeesProductChangedBeforeItsCommit(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "p", "MQTT")
	if _, err := r.ProductByID(ctx, "p"); err != nil { // cached as MQTT
		t.Fatal(err)
	}

	// Hold the committer so the update and the create share the next batch.
	waitQueued, release := holdCommitter(t, r)
	coap := "CoAP"
	updated := make(chan error, 1)
	go func() {
		_, err := r.UpdateProduct(ctx, "proj", "p", ProductUpdate{ProtocolType: &coap})
		updated <- err
	}()
	waitQueued(1)
	created := make(chan error, 1)
	go func() {
		// Not hexadecimal: fine for MQTT, refused for CoAP (it is a PSK).
		_, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "p", NodeID: "n1",
			Auth: AuthInfo{Secret: "not-hex-secret-0123"}})
		created <- err
	}()
	waitQueued(2)
	release()

	if err := <-updated; err != nil {
		t.Fatalf("update: %v", err)
	}
	var inv *ValidationError
	if err := <-created; !errors.As(err, &inv) || inv.Field != "auth_info.secret" {
		t.Fatalf("create after the product became CoAP: %v, want an auth_info.secret error", err)
	}
	if _, err := r.DeviceByProductNode(ctx, "p", "n1"); err == nil {
		t.Fatal("the refused device was stored")
	}
}

// holdCommitter blocks the committer until the returned release is
// called, so the writes queued meanwhile share its next batch.
func holdCommitter(t *testing.T, r *Registry) (waitQueued func(n int), release func()) {
	t.Helper()
	running, rel := make(chan struct{}), make(chan struct{})
	go r.write(context.Background(), func(Writer) error { close(running); <-rel; return nil })
	<-running
	engine := r.store.(*badgerkv.Store)
	waitQueued = func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); engine.Queued() < n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d writes queued, want %d", engine.Queued(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return waitQueued, func() { close(rel) }
}

// A change prepared outside the commit must not undo a change committed
// after it was read: it is applied again to the stored record.
func TestMutateDeviceReappliesToChangedRecord(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "p", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "p", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	waitQueued, release := holdCommitter(t, r)
	frozen := make(chan error, 1)
	go func() { frozen <- r.SetFrozen(ctx, "proj", d.DeviceID, true) }()
	waitQueued(1)
	renamed := make(chan error, 1)
	name := "renamed"
	go func() {
		_, err := r.UpdateDevice(ctx, "proj", d.DeviceID, DeviceUpdate{DeviceName: &name})
		renamed <- err
	}()
	waitQueued(2)
	release()
	if err := <-frozen; err != nil {
		t.Fatal(err)
	}
	if err := <-renamed; err != nil {
		t.Fatal(err)
	}
	got, err := r.Device(ctx, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Frozen || got.DeviceName != name {
		t.Fatalf("frozen=%v name=%q, want both changes kept", got.Frozen, got.DeviceName)
	}
}

// The committer caches what it has just written, so the first connect
// after a create and the reconnect after an activation do not decode the
// record again; the cached copy is the committed one.
func TestCommitterCachesWrittenDevices(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "nb", NodeID: "imei1", Auth: AuthInfo{Secret: "00112233445566778899"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{deviceKey(d.DeviceID), nodeKey("imei1"), productNodeKey("nb", "imei1")} {
		if _, _, ok := r.cache.get(k); !ok {
			t.Fatalf("%q not cached after the create", k)
		}
	}
	if _, err := r.Connected(ctx, d.DeviceID); err != nil {
		t.Fatal(err)
	}
	v, _, ok := r.cache.get(deviceKey(d.DeviceID))
	if !ok {
		t.Fatal("device not cached after its activation")
	}
	c, err := v.(deviceBlob).device(d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if c.ActiveTime.IsZero() || c.Auth.Secret != "00112233445566778899" || c.Status != "" {
		t.Fatalf("cached after activation: active=%v secret=%q status=%q", c.ActiveTime, c.Auth.Secret, c.Status)
	}
}

// The engine's group commit counts transactions and the writes decided in
// them, so an operator can see how many writes share one sync to disk;
// a write refused by its own checks shares the commit without spoiling it.
func TestCommitStatsCountSharedCommits(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "p", "MQTT")
	waitQueued, release := holdCommitter(t, r)
	before := r.store.(*badgerkv.Store).Stats() // the product's commit; the held one is not done
	const n = 5
	errs := make(chan error, n)
	for i := range n {
		go func() {
			// Device 0's node id twice: one create is refused, and still
			// decided in the shared commit.
			_, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "p", NodeID: fmt.Sprint("n", max(i-1, 0))})
			errs <- err
		}()
		waitQueued(i + 1)
	}
	release()
	refused := 0
	for range n {
		if err := <-errs; errors.Is(err, ErrAlreadyExists) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	after := r.store.(*badgerkv.Store).Stats()
	// The held write's commit, then one commit for the n creates.
	if c, o := after.Commits-before.Commits, after.Ops-before.Ops; refused != 1 || c != 2 || o != n+1 {
		t.Fatalf("%d commits of %d writes (%d refused), want 2 commits of %d writes, 1 refused", c, o, refused, n+1)
	}
}

// TestStatusFlushSkipsDeletedDevices: the status flush never writes a
// status time for a device deleted before it, whether that delete
// committed earlier or is an earlier write of the flush's own transaction
// (which the cache does not show yet).
func TestStatusFlushSkipsDeletedDevices(t *testing.T) {
	for _, tc := range []struct {
		name          string
		delete        bool // delete the device first
		sameTxn       bool // in the flush's transaction
		wantStatusKey bool
	}{
		{name: "kept device", wantStatusKey: true},
		{name: "deleted in an earlier transaction", delete: true},
		{name: "deleted earlier in the same transaction", delete: true, sameTxn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, s := newTestRegistry(t, nil)
			ctx := context.Background()
			mustProduct(t, r, "proj", "m1", "MQTT")
			d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Connected(ctx, d.DeviceID); err != nil { // activates, caches the record
				t.Fatal(err)
			}
			q := map[string]statusTime{d.DeviceID: {at: time.Now()}}
			del := func(w Writer) error {
				dd, err := r.getDevice(w, d.DeviceID)
				if err != nil {
					return err
				}
				return r.deleteDevice(w, dd)
			}
			switch {
			case tc.delete && tc.sameTxn:
				// Both writes queue behind a held one, so they share a
				// transaction: the delete first.
				waitQueued, release := holdCommitter(t, r)
				errs := make(chan error, 2)
				go func() { errs <- r.write(ctx, del) }()
				waitQueued(1)
				go func() { errs <- r.write(ctx, statusWrites(q)) }()
				waitQueued(2)
				before := r.store.(*badgerkv.Store).Stats()
				release()
				for range 2 {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
				if st := r.store.(*badgerkv.Store).Stats(); st.Commits-before.Commits != 2 {
					t.Fatalf("%d commits for the held write and the two queued behind it, want 2", st.Commits-before.Commits)
				}
			case tc.delete:
				if err := r.DeleteDevice(ctx, "proj", d.DeviceID); err != nil {
					t.Fatal(err)
				}
				fallthrough
			default:
				if err := r.write(ctx, statusWrites(q)); err != nil {
					t.Fatal(err)
				}
			}
			err = s.View(context.Background(), func(rd Reader) error {
				_, err := rd.Get(statusTimeKey(d.DeviceID))
				return err
			})
			if got := err == nil; got != tc.wantStatusKey {
				t.Fatalf("status key stored: %v, want %v (%v)", got, tc.wantStatusKey, err)
			}
		})
	}
}

// TestCacheFillsSurviveUncachedWrites: a lookup that misses the cache
// fills it unless a write to the same shard raced with it, and only writes
// of cached key families count. A storm writes status times, counters and
// messages all the time; if those refused fills, the devices a reconnect
// storm looks up would keep coming from the store.
func TestCacheFillsSurviveUncachedWrites(t *testing.T) {
	for _, tc := range []struct {
		key       []byte
		cacheable bool
	}{
		{deviceKey("dev"), true},
		{nodeKey("imei1"), true},
		{productNodeKey("prod", "n1"), true},
		{fingerprintKey("ab12"), true},
		{productKey("prod"), true},
		{statusTimeKey("dev"), false},
		{productCountKey("prod"), false},
		{projectCountKey("proj"), false},
		{projectDeviceKey("proj", "0001"), false},
		{asyncKey("cmd"), false},
		{expiryKey(time.Unix(1, 0), "dev"), false},
	} {
		if got := cacheable(string(tc.key)); got != tc.cacheable {
			t.Errorf("cacheable(%q) = %v, want %v", tc.key, got, tc.cacheable)
		}
	}

	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	k := deviceKey("some-device")
	if _, _, ok := r.cache.get(k); ok {
		t.Fatal("cached before any read")
	}
	_, gen, _ := r.cache.get(k) // a lookup's miss, before its store read
	// Meanwhile the committer writes status times across every shard.
	if err := r.write(ctx, func(w Writer) error {
		for i := range 1000 {
			if err := w.Set(statusTimeKey(fmt.Sprint("other-", i)), []byte{1}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.cache.put(k, &Device{DeviceID: "some-device"}, gen) // the lookup's fill
	if _, _, ok := r.cache.get(k); !ok {
		t.Fatal("a fill was refused because of writes to keys that are never cached")
	}
	// A write of a cached key to the same shard still refuses it.
	_, gen, _ = r.cache.get(deviceKey("other"))
	if err := r.write(ctx, func(w Writer) error {
		for i := range 1000 {
			if err := w.Set(deviceKey(fmt.Sprint("written-", i)), []byte("{}")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.cache.put(deviceKey("other"), &Device{DeviceID: "other"}, gen)
	if _, _, ok := r.cache.get(deviceKey("other")); ok {
		t.Fatal("a fill raced with a write to its shard and was kept")
	}
}
