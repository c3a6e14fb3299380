package lwm2m_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

const secret = "00112233445566778899aabbccddeeff"

type fixture struct {
	t   testing.TB
	reg *registry.Registry
	srv *lwm2m.Server
}

func newFixture(t testing.TB, mod func(*lwm2m.Options)) *fixture {
	t.Helper()
	st, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, MasterKey: bytes.Repeat([]byte{1}, 32), SweepInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = reg.Run(ctx); close(done) }()
	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	o := lwm2m.Options{Registry: reg, Listen: "127.0.0.1:0", DTLSListen: "127.0.0.1:0", Logger: log,
		RequestTimeout: 3 * time.Second, SweepInterval: 50 * time.Millisecond, MinLifetime: time.Second}
	if mod != nil {
		mod(&o)
	}
	srv, err := lwm2m.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	reg.AddKicker(srv)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		<-done
		reg.Close()
		st.Close()
	})
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p", ProductID: "nb", Name: "NB", DeviceType: "Meter", ProtocolType: "CoAP"}); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, reg: reg, srv: srv}
}

func (f *fixture) device(node string, secure bool) *registry.Device {
	f.t.Helper()
	d, err := f.reg.CreateDevice(context.Background(), registry.NewDevice{ProjectID: "p", NodeID: node, ProductID: "nb",
		Auth: registry.AuthInfo{Secret: secret, SecureAccess: secure}})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) status(id string) registry.Status {
	f.t.Helper()
	d, err := f.reg.Device(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return d.Status
}

func (f *fixture) client(cfg lwm2mclient.Config) *lwm2mclient.Client {
	f.t.Helper()
	if cfg.Server == "" {
		cfg.Server = f.srv.UDPAddr().String()
		if cfg.PSK != nil {
			cfg.Server = f.srv.DTLSAddr().String()
		}
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 3 * time.Second
	}
	c, err := lwm2mclient.Dial(context.Background(), cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// command queues an asynchronous command the way the REST API does and
// returns its id.
func (f *fixture) command(dev, service, name string, paras string, now bool) string {
	f.t.Helper()
	n := registry.NewAsyncCommand{ServiceID: service, CommandName: name, Paras: json.RawMessage(paras)}
	if now {
		n.SendStrategy = registry.SendImmediately
	}
	if err := f.srv.CheckAsyncCommand(n); err != nil {
		f.t.Fatal(err)
	}
	c, err := f.reg.CreateAsyncCommand(context.Background(), "p", dev, n)
	if err != nil {
		f.t.Fatal(err)
	}
	f.srv.AsyncCommandQueued(context.Background(), dev, now)
	return c.CommandID
}

func (f *fixture) waitCommand(dev, id string, want registry.AsyncStatus) *registry.AsyncCommand {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := f.reg.AsyncCommand(context.Background(), "p", dev, id)
		if err != nil {
			f.t.Fatal(err)
		}
		if c.Status == want {
			return c
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("command %s is %s (result %s), want %s", id, c.Status, c.Result, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func codeOf(err error) codes.Code {
	var ce *lwm2mclient.CodeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLwM2MRegisterNoSecUpdateDeregister(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("meter1", false)
	c := f.client(lwm2mclient.Config{Endpoint: "meter1", Lifetime: 300})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if loc := c.Location(); len(loc) != len("/rd/")+16 {
		t.Fatalf("location %q", loc)
	}
	if s := f.status(d.DeviceID); s != registry.StatusOnline {
		t.Fatalf("status after register: %s", s)
	}
	if n := f.srv.Registered(); n != 1 {
		t.Fatalf("Registered() = %d after a register, want 1", n)
	}
	r, ok := f.srv.Registration(d.DeviceID)
	if !ok || r.Endpoint != "meter1" || r.Lifetime != 300*time.Second || r.Secure || r.QueueMode || len(r.Objects) == 0 {
		t.Fatalf("registration %+v", r)
	}
	if err := c.Update(ctx, "lt=600", "b=UQ"); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.srv.Registration(d.DeviceID); r.Lifetime != 600*time.Second || !r.QueueMode {
		t.Fatalf("after update %+v", r)
	}
	for _, bad := range [][]string{{"lt=0"}, {"lt=x"}, {"b=Z"}, {"ep=other"}} {
		if err := c.Update(ctx, bad...); codeOf(err) != codes.BadRequest {
			t.Errorf("update %v: %v, want 4.00", bad, err)
		}
	}
	if err := c.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if s := f.status(d.DeviceID); s != registry.StatusOffline {
		t.Fatalf("status after deregister: %s", s)
	}
	if n := f.srv.Registered(); n != 0 {
		t.Fatalf("Registered() = %d after deregister, want 0", n)
	}
	if err := c.Update(ctx); codeOf(err) != codes.NotFound {
		t.Fatalf("update after deregister: %v", err)
	}
}

func TestLwM2MRegisterRefusalsLeaveRegistryUnchanged(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.MinLifetime, o.MaxLifetime = 10*time.Second, time.Hour })
	plain := f.device("plain", false)
	secure := f.device("secure", true)
	frozen := f.device("frozen", false)
	if err := f.reg.SetFrozen(context.Background(), "p", frozen.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  lwm2mclient.Config
		want codes.Code
	}{
		{"unknown endpoint", lwm2mclient.Config{Endpoint: "nobody"}, codes.Forbidden},
		{"secure-only over NoSec", lwm2mclient.Config{Endpoint: "secure"}, codes.Forbidden},
		{"frozen", lwm2mclient.Config{Endpoint: "frozen"}, codes.Forbidden},
		{"lifetime too short", lwm2mclient.Config{Endpoint: "plain", Lifetime: 5}, codes.BadRequest},
		{"lifetime too long", lwm2mclient.Config{Endpoint: "plain", Lifetime: 7200}, codes.BadRequest},
		{"bad links", lwm2mclient.Config{Endpoint: "plain", Objects: "</3/0>,<broken"}, codes.BadRequest},
		{"link not an object", lwm2mclient.Config{Endpoint: "plain", Objects: "</3/0/1>"}, codes.BadRequest},
		{"bad binding", lwm2mclient.Config{Endpoint: "plain", Binding: "X"}, codes.BadRequest},
		{"unsupported version", lwm2mclient.Config{Endpoint: "plain", Version: "2.0"}, codes.PreconditionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.client(tc.cfg)
			err := c.Register(context.Background())
			if got := codeOf(err); got != tc.want {
				t.Fatalf("register: %v, want %s", err, tc.want)
			}
			// A refusal says nothing of its cause (TestLwM2MNoSecRefusalsAreAlike);
			// other answers carry a diagnostic when it fits in the
			// request's size (TestLwM2MNoSecAnswersNoLargerThanRequests).
			var ce *lwm2mclient.CodeError
			if errors.As(err, &ce) && tc.want == codes.Forbidden && ce.Diagnostic != "" {
				t.Errorf("a refusal with a diagnostic: %q", ce.Diagnostic)
			}
		})
	}
	// Counted by answer; only the unknown endpoint and the secure-only
	// device failed authentication (frozen is a refusal of a proven one).
	st := f.srv.Stats()
	for result, want := range map[string]uint64{"accepted": 0, "refused": 3, "rejected": 6, "error": 0} {
		if got, ok := st.Registers[result]; got != want || !ok {
			t.Errorf("registers %s: %d (present %t), want %d", result, got, ok, want)
		}
	}
	for reason, want := range map[string]uint64{"unknown_endpoint": 1, "secure_required": 1, "identity_mismatch": 0, "dtls_handshake": 0} {
		if got, ok := st.AuthFailures[reason]; got != want || !ok {
			t.Errorf("auth failures %s: %d (present %t), want %d", reason, got, ok, want)
		}
	}
	for _, d := range []*registry.Device{plain, secure, frozen} {
		got, _ := f.reg.Device(context.Background(), d.DeviceID)
		if !got.ActiveTime.IsZero() || (got.Status != registry.StatusInactive && got.Status != registry.StatusFrozen) {
			t.Errorf("%s changed: status %s active %v", d.DeviceID, got.Status, got.ActiveTime)
		}
		if _, ok := f.srv.Registration(d.DeviceID); ok {
			t.Errorf("%s has a registration", d.DeviceID)
		}
	}
}

func TestLwM2MDTLSRegistration(t *testing.T) {
	var mu sync.Mutex
	handshakes := map[string]int{}
	f := newFixture(t, func(o *lwm2m.Options) {
		// The failed handshakes end at this timeout on the server's side.
		o.HandshakeTimeout = 2 * time.Second
		o.OnHandshake = func(result string, took time.Duration) {
			if took <= 0 || took > time.Minute {
				t.Errorf("handshake %s took %v", result, took)
			}
			mu.Lock()
			handshakes[result]++
			mu.Unlock()
		}
	})
	d := f.device("dtls1", true)
	other := f.device("dtls2", true)
	key := lwm2m.PSK(secret)
	ctx := context.Background()

	c := f.client(lwm2mclient.Config{Endpoint: "dtls1", PSKIdentity: "dtls1", PSK: key})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.srv.Registration(d.DeviceID); r == nil || !r.Secure {
		t.Fatalf("registration %+v", r)
	}

	// The PSK proves dtls2, the endpoint names dtls1: refused.
	c2 := f.client(lwm2mclient.Config{Endpoint: "dtls1", PSKIdentity: "dtls2", PSK: key})
	if err := c2.Register(ctx); codeOf(err) != codes.Forbidden {
		t.Fatalf("ep != identity: %v", err)
	}
	// A wrong key or an unknown identity fails the handshake.
	for _, cfg := range []lwm2mclient.Config{
		{Endpoint: "dtls2", PSKIdentity: "dtls2", PSK: []byte("wrong key 123456")},
		{Endpoint: "ghost", PSKIdentity: "ghost", PSK: key},
	} {
		cfg.Server, cfg.RequestTimeout = f.srv.DTLSAddr().String(), 2*time.Second
		if c, err := lwm2mclient.Dial(ctx, cfg); err == nil {
			c.Close()
			t.Fatalf("handshake with identity %s and a bad key succeeded", cfg.PSKIdentity)
		}
	}
	if got, _ := f.reg.Device(ctx, other.DeviceID); !got.ActiveTime.IsZero() {
		t.Fatal("refused device was activated")
	}
	st := f.srv.Stats()
	if st.Registers["accepted"] != 1 || st.Registers["refused"] != 1 || st.AuthFailures["identity_mismatch"] != 1 {
		t.Errorf("registers %v, auth failures %v: want 1 accepted, 1 refused for identity mismatch", st.Registers, st.AuthFailures)
	}
	// Two handshakes succeeded (c, c2), two failed after the cookie.
	eventually(t, "handshakes observed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handshakes["ok"] == 2 && handshakes["failed"] == 2 && f.srv.Stats().AuthFailures["dtls_handshake"] == 2
	})
	// Resetting the secret kicks the registration and its session.
	if _, err := f.reg.ResetSecret(ctx, "p", d.DeviceID, registry.Primary, "ffeeddccbbaa99887766554433221100", true); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.srv.Registration(d.DeviceID); ok {
		t.Fatal("registration survived the secret reset")
	}
}

func TestLwM2MReadWriteExecuteThroughCommands(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("rw", false)
	c := f.client(lwm2mclient.Config{Endpoint: "rw"})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	read := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/3/0/0"}`, true), registry.AsyncSuccessful)
	var res struct {
		Code   string `json:"code"`
		Values []struct {
			Path, Kind string
			Value      any
		} `json:"values"`
	}
	if err := json.Unmarshal(read.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Code != "2.05" || len(res.Values) != 1 || res.Values[0].Value != "iotgate" || res.Values[0].Kind != "String" {
		t.Fatalf("read result %s", read.Result)
	}
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "WRITE", `{"path":"/3/0/14","value":"+08:00","kind":"String"}`, true), registry.AsyncSuccessful)
	if v, _ := c.Value("/3/0/14"); v.Str() != "+08:00" {
		t.Fatalf("client has %v", v)
	}
	obj := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/3/0"}`, true), registry.AsyncSuccessful)
	if !bytes.Contains(obj.Result, []byte(`"+08:00"`)) || !bytes.Contains(obj.Result, []byte(`"content_format":11542`)) {
		t.Fatalf("instance read %s", obj.Result)
	}
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "EXECUTE", `{"path":"/3/0/4"}`, true), registry.AsyncFailed) // no such resource on the client
	missing := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/42/0/0"}`, true), registry.AsyncFailed)
	if !bytes.Contains(missing.Result, []byte(`"code":"4.04"`)) {
		t.Fatalf("missing read %s", missing.Result)
	}
	// Any other service: the paras' bytes go to /19/1/0.
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "Meter", "SET", `{"data":"AQID"}`, true), registry.AsyncSuccessful)
	if v, _ := c.Value("/19/1/0"); !bytes.Equal(v.Bytes(), []byte{1, 2, 3}) {
		t.Fatalf("/19/1/0 = %v", v.Bytes())
	}
	disc := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "DISCOVER", `{"path":"/3/0"}`, true), registry.AsyncSuccessful)
	if !bytes.Contains(disc.Result, []byte(`"target":"/3/0/0"`)) {
		t.Fatalf("discover %s", disc.Result)
	}
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "CREATE", `{"path":"/3303","values":[{"path":"/3303/0/5700","value":21.5,"kind":"Float"}]}`, true), registry.AsyncSuccessful)
	// TLV carries no types and the client has no model of object 3303, so
	// it holds the float's four bytes.
	if v, _ := c.Value("/3303/0/5700"); len(v.Bytes()) != 4 || math.Float32frombits(binary.BigEndian.Uint32(v.Bytes())) != 21.5 {
		t.Fatalf("created value %v", v)
	}
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "DELETE", `{"path":"/3303/0"}`, true), registry.AsyncSuccessful)
	if _, ok := c.Value("/3303/0/5700"); ok {
		t.Fatal("instance survived DELETE")
	}
}

func TestLwM2MAppDataObservation(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("obs", false)
	c := f.client(lwm2mclient.Config{Endpoint: "obs"})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the platform to observe /19/0/0", func() bool { return c.Observed("/19/0/0") })
	if err := c.SendData([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the notification to be stored", func() bool {
		msgs, err := f.reg.Messages(context.Background(), "p", d.DeviceID, 10)
		return err == nil && len(msgs) > 0 && string(msgs[0].Payload) == "hello" && msgs[0].Topic == "/19/0/0"
	})
	// An application-requested observation stores decoded values.
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "OBSERVE", `{"path":"/3/0/9"}`, true), registry.AsyncSuccessful)
	if err := c.Set("/3/0/9", formatInt(42)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the battery notification", func() bool {
		msgs, _ := f.reg.Messages(context.Background(), "p", d.DeviceID, 10)
		return len(msgs) > 0 && msgs[0].Topic == "/3/0/9" && bytes.Contains(msgs[0].Payload, []byte(`"value":42`))
	})
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "CANCEL_OBSERVE", `{"path":"/3/0/9"}`, true), registry.AsyncSuccessful)
	eventually(t, "the client to forget the observation", func() bool { return !c.Observed("/3/0/9") })
	// In: "hello" and the battery's notification; out: the two
	// Observes and the cancel.
	if st := f.srv.Stats(); st.MessagesIn != 2 || st.MessagesOut != 3 {
		t.Errorf("messages in %d, out %d; want 2 and 3", st.MessagesIn, st.MessagesOut)
	}
}

func TestLwM2MQueueModeHoldsCommandsUntilUplink(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.QueueWindow = 300 * time.Millisecond })
	d := f.device("sleepy", false)
	c := f.client(lwm2mclient.Config{Endpoint: "sleepy", Binding: "UQ"})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the /19/0/0 observation", func() bool { return c.Observed("/19/0/0") })
	c.Sleep()
	time.Sleep(400 * time.Millisecond) // past the wake window
	first := f.command(d.DeviceID, "Meter", "SET", `{"data":"AQ=="}`, true)
	second := f.command(d.DeviceID, "Meter", "SET", `{"data":"Ag=="}`, false)
	time.Sleep(200 * time.Millisecond)
	for _, id := range []string{first, second} {
		if cmd, _ := f.reg.AsyncCommand(ctx, "p", d.DeviceID, id); cmd.Status != registry.AsyncPending {
			t.Fatalf("command for a sleeping client is %s", cmd.Status)
		}
	}
	c.Wake()
	if err := c.Update(ctx); err != nil {
		t.Fatal(err)
	}
	a := f.waitCommand(d.DeviceID, first, registry.AsyncSuccessful)
	b := f.waitCommand(d.DeviceID, second, registry.AsyncSuccessful)
	if b.SentTime.Before(a.SentTime) {
		t.Fatal("commands delivered out of order")
	}
	if v, _ := c.Value("/19/1/0"); !bytes.Equal(v.Bytes(), []byte{2}) {
		t.Fatalf("last write %v", v.Bytes())
	}
}

func TestLwM2MRegistrationExpires(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("brief", false)
	c := f.client(lwm2mclient.Config{Endpoint: "brief", Lifetime: 1})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "expiry", func() bool { _, ok := f.srv.Registration(d.DeviceID); return !ok })
	if s := f.status(d.DeviceID); s != registry.StatusOffline {
		t.Fatalf("status after expiry %s", s)
	}
	if err := c.Update(context.Background()); codeOf(err) != codes.NotFound {
		t.Fatalf("update after expiry: %v", err)
	}
}

func TestLwM2MReRegistrationReplaces(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("again", false)
	c1 := f.client(lwm2mclient.Config{Endpoint: "again"})
	c2 := f.client(lwm2mclient.Config{Endpoint: "again"})
	ctx := context.Background()
	if err := c1.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if c1.Location() == c2.Location() {
		t.Fatal("same registration id twice")
	}
	if err := c1.Update(ctx); codeOf(err) != codes.NotFound {
		t.Fatalf("old registration still answers: %v", err)
	}
	if s := f.status(d.DeviceID); s != registry.StatusOnline {
		t.Fatalf("status %s", s)
	}
}

func formatInt(i int64) format.Value { return format.IntegerValue(i) }

// TestLwM2MMalformedInput: garbage datagrams, malformed CoAP and requests
// the registration interface does not serve get their 4.xx or nothing,
// and the server keeps serving.
func TestLwM2MMalformedInput(t *testing.T) {
	f := newFixture(t, nil)
	f.device("sturdy", false)
	raw, err := net.Dial("udp", f.srv.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, d := range [][]byte{
		{},
		{0xff},
		{0x40, 0x01},                      // truncated header
		{0x4f, 0x01, 0x00, 0x01},          // token length 15
		{0x44, 0x02, 0x00, 0x02, 1, 2, 3}, // token shorter than announced
		{0x40, 0x02, 0x00, 0x03, 0xbf, 0xff, 0xff},      // option with reserved length 15
		{0x40, 0x02, 0x00, 0x04, 0xb3, 'r', 'd'},        // option value truncated
		append([]byte{0x40, 0x02, 0x00, 0x05, 0xff}, 0), // payload marker, 1-byte payload, fine
		bytes.Repeat([]byte{0x5a}, 2000),
	} {
		if _, err := raw.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	c := f.client(lwm2mclient.Config{Endpoint: "sturdy"})
	ctx := context.Background()
	for _, tc := range []struct {
		code  codes.Code
		path  string
		query []string
		want  codes.Code
	}{
		{codes.GET, "/rd", nil, codes.MethodNotAllowed},
		{codes.POST, "/rd/doesnotexist", nil, codes.NotFound},
		{codes.PUT, "/rd/doesnotexist", nil, codes.MethodNotAllowed},
		{codes.GET, "/bs", nil, codes.NotFound},
		{codes.POST, "/rd", []string{"lt=60"}, codes.BadRequest},
		{codes.POST, "/rd", []string{"ep=sturdy", "lwm2m=9.9"}, codes.PreconditionFailed},
	} {
		resp, err := c.Do(ctx, tc.code, tc.path, tc.query, 0, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.code, tc.path, err)
		}
		if resp.Code != tc.want {
			t.Errorf("%s %s %v: %s %q, want %s", tc.code, tc.path, tc.query, resp.Code, resp.Payload, tc.want)
		}
	}
	if err := c.Register(ctx); err != nil {
		t.Fatalf("register after the garbage: %v", err)
	}
}

// TestLwM2MHandshakesAreBounded: with one handshake slot, a handshake that
// stalls holds it until the handshake timeout; the next client gets in
// only then, and an unregistered session is closed when idle.
func TestLwM2MHandshakesAreBounded(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) {
		o.MaxHandshakes, o.HandshakeTimeout, o.IdleTimeout = 1, 800*time.Millisecond, 1500*time.Millisecond
	})
	f.device("patient", true)
	stall, err := net.Dial("udp", f.srv.DTLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	// A first ClientHello whose client never echoes the cookie: pion
	// answers it and waits for more.
	if _, err := stall.Write(firstClientHello()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	c := f.client(lwm2mclient.Config{Endpoint: "patient", PSKIdentity: "patient", PSK: lwm2m.PSK(secret)})
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("handshake took %v: the stalled one did not hold the only slot", waited)
	}
	// Connected but never registered: closed after idle_timeout, so the
	// next request finds no session.
	time.Sleep(2500 * time.Millisecond)
	if err := c.Register(context.Background()); err == nil {
		t.Fatal("an idle unregistered DTLS session was kept open")
	}
	// A session that carries a registration outlives idle_timeout: a
	// sleeping device wakes up into it.
	c2 := f.client(lwm2mclient.Config{Endpoint: "patient", PSKIdentity: "patient", PSK: lwm2m.PSK(secret)})
	if err := c2.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if err := c2.Update(context.Background()); err != nil {
		t.Fatalf("update of a registered session after idle_timeout: %v", err)
	}
}

// TestLwM2MRebootedDeviceHandshakesAgain: a DTLS device that lost power
// (no close_notify, no De-register) and comes back from the same address
// and port gets a new session and registration at once, instead of
// waiting for its old session to end (the mux's routing policy is tested
// in transport/dtlsmux_test.go).
func TestLwM2MRebootedDeviceHandshakesAgain(t *testing.T) {
	// Long enough for a retransmission (after 2-3 s) to be answered.
	f := newFixture(t, func(o *lwm2m.Options) { o.RequestTimeout = 8 * time.Second })
	d := f.device("reboot", true)
	ctx := context.Background()
	cfg := lwm2mclient.Config{Endpoint: "reboot", PSKIdentity: "reboot", PSK: lwm2m.PSK(secret)}
	c := f.client(cfg)
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	// Let the platform's /19/0/0 observation complete: retransmissions of
	// the old session that reach the new one mid-handshake upset pion's
	// client (devices' DTLS stacks drop such records).
	eventually(t, "the /19/0/0 observation", func() bool { return c.Observed("/19/0/0") })
	first, _ := f.srv.Registration(d.DeviceID)
	c.Drop()

	cfg.LocalAddr = c.LocalAddr().String()
	c2 := f.client(cfg)
	if err := c2.Register(ctx); err != nil {
		t.Fatalf("register after reboot: %v", err)
	}
	second, _ := f.srv.Registration(d.DeviceID)
	if second.ID == first.ID {
		t.Fatal("registration not replaced")
	}
	f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/3/0/0"}`, true), registry.AsyncSuccessful)

	// The new session is looked after like any other: a request whose
	// first transmission is lost is sent again. (go-coap's DTLS server
	// keyed its sessions by address, so the old session's end dropped
	// the new one, which then had no retransmissions.)
	c2.Sleep()
	read := f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/3/0/0"}`, true)
	time.Sleep(500 * time.Millisecond)
	c2.Wake()
	f.waitCommand(d.DeviceID, read, registry.AsyncSuccessful)
}

// TestLwM2MImeiEndpoint: a Qualcomm-style endpoint urn:imei:<digits>
// reaches the device whose node_id is the digits, over NoSec and DTLS
// (PSK identity in the same form).
func TestLwM2MImeiEndpoint(t *testing.T) {
	f := newFixture(t, nil)
	plain := f.device("861234567890123", false)
	secure := f.device("861234567890124", true)
	ctx := context.Background()
	if err := f.client(lwm2mclient.Config{Endpoint: "urn:imei:861234567890123"}).Register(ctx); err != nil {
		t.Fatal(err)
	}
	c := f.client(lwm2mclient.Config{Endpoint: "urn:imei:861234567890124", PSKIdentity: "urn:imei:861234567890124", PSK: lwm2m.PSK(secret)})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*registry.Device{plain, secure} {
		if s := f.status(d.DeviceID); s != registry.StatusOnline {
			t.Errorf("%s is %s", d.DeviceID, s)
		}
	}
}

// On wildcard addresses (the defaults ":5683" and ":5684", dual-stack
// sockets) the server answers IPv4 clients as well as IPv6 ones, and from
// the address each client sends to (127.0.0.3 is not the one the kernel
// would pick; the client's socket is connected, so it takes nothing from
// another), both over NoSec and over DTLS. go-coap's UDP socket sent its
// answers to an IPv4 peer there with IPv6 packet information, which
// Linux refuses (EINVAL): no IPv4 client could register; and go-coap's,
// like pion's, left the source address to the kernel.
func TestLwM2MOnWildcardAddresses(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.Listen, o.DTLSListen = ":0", ":0" })
	n := 0
	for _, secure := range []bool{false, true} {
		for _, host := range []string{"127.0.0.1", "::1", "127.0.0.3"} {
			name := "nosec/" + host
			port := f.srv.UDPAddr().(*net.UDPAddr).Port
			if secure {
				name, port = "dtls/"+host, f.srv.DTLSAddr().(*net.UDPAddr).Port
			}
			t.Run(name, func(t *testing.T) {
				if host == "::1" {
					if l, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
						t.Skipf("no IPv6 loopback here: %v", err)
					} else {
						l.Close()
					}
				}
				n++
				ep := fmt.Sprintf("wild%d", n)
				d := f.device(ep, secure)
				cfg := lwm2mclient.Config{Server: net.JoinHostPort(host, fmt.Sprint(port)), Endpoint: ep, Lifetime: 300}
				if secure {
					cfg.PSKIdentity, cfg.PSK = ep, lwm2m.PSK(secret)
				}
				cfg.RequestTimeout = 3 * time.Second
				ctx := context.Background()
				c, err := lwm2mclient.Dial(ctx, cfg)
				if err != nil {
					t.Fatalf("dial %s: %v", host, err)
				}
				defer c.Close()
				if err := c.Register(ctx); err != nil {
					t.Fatalf("register over %s: %v", host, err)
				}
				if s := f.status(d.DeviceID); s != registry.StatusOnline {
					t.Fatalf("status after register: %s", s)
				}
				// A request of the server's (not an answer) reaches the
				// client too: from the address the client sends to.
				eventually(t, "the platform to observe /19/0/0", func() bool { return c.Observed("/19/0/0") })
				if err := c.Update(ctx, "lt=600"); err != nil {
					t.Fatal(err)
				}
				if err := c.Deregister(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
