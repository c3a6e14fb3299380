package mqtt

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
	"github.com/iotgate/iotgate/servercert"
)

// env is a real registry over the in-memory store with a Server on
// loopback ports, driven by real MQTT clients.
type env struct {
	t       testing.TB
	reg     *registry.Registry
	srv     *Server
	roots   *x509.CertPool // trusts the server certificate
	logs    *syncBuffer
	project string
	product string
}

const testProject, testProduct = "proj1", "prod1"

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvLogging(t, slog.LevelDebug)
}

// newEnvLogging is newEnv with the server logging from level (benchmarks
// log as in production, from Info).
func newEnvLogging(t testing.TB, level slog.Level) *env {
	t.Helper()
	return newEnvWith(t, level, nil)
}

// newEnvWith is newEnvLogging with the server's options changed by mod.
func newEnvWith(t testing.TB, level slog.Level, mod func(*Options)) *env {
	t.Helper()
	store, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: store, MasterKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(); store.Close() })
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: testProject, ProductID: testProduct,
		Name: "Meter", DeviceType: "Sensor", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}

	gen, err := servercert.LoadOrCreate(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(gen.CertFile, gen.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(gen.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	logs := &syncBuffer{}
	o := Options{
		Registry:  reg,
		Listen:    "127.0.0.1:0",
		TLSListen: "127.0.0.1:0",
		TLS:       &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})),
	}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Error(err)
			// Say what is still running, so a hang can be diagnosed.
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Logf("goroutines:\n%s", b.String())
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	reg.AddKicker(srv)
	return &env{t: t, reg: reg, srv: srv, roots: roots, logs: logs, project: testProject, product: testProduct}
}

// secretDevice creates a SECRET device with the given secrets.
func (e *env) secretDevice(id, secret, secondary string, secure bool) *registry.Device {
	e.t.Helper()
	ctx := context.Background()
	d, err := e.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: e.project, DeviceID: id, NodeID: id,
		ProductID: e.product, Auth: registry.AuthInfo{Secret: secret, SecureAccess: secure}})
	if err != nil {
		e.t.Fatal(err)
	}
	if secondary != "" {
		if _, err := e.reg.ResetSecret(ctx, e.project, id, registry.Secondary, secondary, false); err != nil {
			e.t.Fatal(err)
		}
	}
	return d
}

// certDevice creates a CERTIFICATES device with optional fingerprints.
func (e *env) certDevice(id, fp, fp2 string) *registry.Device {
	e.t.Helper()
	ctx := context.Background()
	d, err := e.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: e.project, DeviceID: id, NodeID: id,
		ProductID: e.product, Auth: registry.AuthInfo{Type: registry.AuthCertificates, Fingerprint: fp, SecureAccess: true}})
	if err != nil {
		e.t.Fatal(err)
	}
	if fp2 != "" {
		if _, err := e.reg.ResetFingerprint(ctx, e.project, id, registry.Secondary, fp2, false); err != nil {
			e.t.Fatal(err)
		}
	}
	return d
}

func (e *env) status(id string) registry.Status {
	e.t.Helper()
	d, err := e.reg.Device(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return d.Status
}

func (e *env) waitStatus(id string, want registry.Status) {
	e.t.Helper()
	eventually(e.t, func() bool { return e.status(id) == want }, "device %s status %s", id, want)
}

// ready waits until the registry has the device ONLINE and its session
// takes downlinks (a takeover's old session may still be closing).
func (e *env) ready(id string) {
	e.t.Helper()
	eventually(e.t, func() bool {
		_, live := e.srv.session(id)
		return live && e.status(id) == registry.StatusOnline
	}, "device %s ready", id)
}

// settled waits until the device has acknowledged every downlink.
func (e *env) settled(id string) {
	e.t.Helper()
	eventually(e.t, func() bool {
		cl, ok := e.srv.broker.Clients.Get(id)
		return ok && cl.State.Inflight.Len() == 0
	}, "device %s to acknowledge its downlinks", id)
}

// huaweiPassword computes the IoTDA password independently of the server
// code (TestPasswordVector pins it to Huawei's published vector).
func huaweiPassword(secret, timestamp string) string {
	m := hmac.New(sha256.New, []byte(timestamp))
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

func hourStamp(t time.Time) string { return t.UTC().Format("2006010215") }

// dial describes a paho (MQTT 3.1.1) connection attempt; zero values mean
// a well-formed sign_type 0 CONNECT of device id with secret.
type dial struct {
	id        string // device id: username and ClientId device part
	secret    string
	clientID  string        // overrides the computed ClientId
	username  *string       // overrides id as username
	password  *string       // overrides the computed password
	keepalive time.Duration // default 120 s
	tls       bool
	cert      *tls.Certificate
	will      string // will topic, if any
}

// client is a connected paho client collecting what it receives.
type client struct {
	paho.Client
	msgs chan paho.Message
	lost chan error
}

func (e *env) connect(d dial) (*client, byte, error) {
	e.t.Helper()
	ts := hourStamp(time.Now())
	cid := d.clientID
	if cid == "" {
		cid = d.id + "_0_0_" + ts
	}
	user := d.id
	if d.username != nil {
		user = *d.username
	}
	pw := ""
	if d.secret != "" {
		pw = huaweiPassword(d.secret, ts)
	}
	if d.password != nil {
		pw = *d.password
	}
	ka := d.keepalive
	if ka == 0 {
		ka = 120 * time.Second
	}
	c := &client{msgs: make(chan paho.Message, 16), lost: make(chan error, 1)}
	o := paho.NewClientOptions().SetClientID(cid).SetUsername(user).SetPassword(pw).
		SetKeepAlive(ka).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(false).SetCleanSession(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err })
	if d.will != "" {
		o.SetWill(d.will, "gone", 1, false)
	}
	if d.tls {
		tc := &tls.Config{RootCAs: e.roots}
		if d.cert != nil {
			tc.Certificates = []tls.Certificate{*d.cert}
		}
		o.AddBroker("ssl://" + e.srv.TLSAddr()).SetTLSConfig(tc)
	} else {
		o.AddBroker("tcp://" + e.srv.Addr())
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		e.t.Fatal("connect timed out")
	}
	code := tok.(*paho.ConnectToken).ReturnCode()
	if tok.Error() != nil {
		return nil, code, tok.Error()
	}
	e.t.Cleanup(func() { c.Disconnect(0) })
	return c, code, nil
}

// mustConnect connects or fails the test.
func (e *env) mustConnect(d dial) *client {
	e.t.Helper()
	c, code, err := e.connect(d)
	if err != nil {
		e.t.Fatalf("connect %s: code 0x%02x: %v", d.id, code, err)
	}
	return c
}

// refused asserts that the CONNECT is refused with the MQTT 3.1.1 code.
func (e *env) refused(d dial, want byte) {
	e.t.Helper()
	c, code, err := e.connect(d)
	if err == nil {
		c.Disconnect(0)
		e.t.Fatalf("connect %s succeeded, want refusal 0x%02x", d.id, want)
	}
	if code != want {
		e.t.Fatalf("connect %s: code 0x%02x (%v), want 0x%02x", d.id, code, err, want)
	}
}

// sub subscribes and returns the granted codes per filter.
func (c *client) sub(t *testing.T, filters ...string) map[string]byte {
	t.Helper()
	m := make(map[string]byte, len(filters))
	for _, f := range filters {
		m[f] = 1
	}
	tok := c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %v: %v", filters, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()
}

// mustSub subscribes and fails unless every filter is granted.
func (c *client) mustSub(t *testing.T, filters ...string) {
	t.Helper()
	for f, code := range c.sub(t, filters...) {
		if code > 1 {
			t.Fatalf("subscription to %s refused: 0x%02x", f, code)
		}
	}
}

func (c *client) pub(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next received message or fails after d.
func (c *client) next(t *testing.T, d time.Duration) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(d):
		t.Fatal("no message received")
		return nil
	}
}

// none asserts nothing arrives within d.
func (c *client) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message on %s: %s", m.Topic(), m.Payload())
	case <-time.After(d):
	}
}

func (c *client) waitLost(t *testing.T) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(15 * time.Second): // a bound, not a speed: a 1 MiB refusal under -race on a loaded machine took over 5 s
		t.Fatal("connection not closed by the server")
	}
}

func eventually(t testing.TB, cond func() bool, format string, a ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, a...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testCA is a device CA for X.509 tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
}

// issue signs a client certificate valid from notBefore to notAfter.
func (ca *testCA) issue(t testing.TB, cn string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) client(t testing.TB, cn string) tls.Certificate {
	return ca.issue(t, cn, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// trust uploads the CA to the project and proves possession, as the REST
// API does; it returns the certificate id.
func (e *env) trust(ca *testCA) string {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.reg.AddCACert(ctx, e.project, ca.pem())
	if err != nil {
		e.t.Fatal(err)
	}
	proof := ca.client(e.t, c.VerifyCode)
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proof.Certificate[0]}))
	if _, err := e.reg.VerifyCACert(ctx, e.project, c.CertificateID, p); err != nil {
		e.t.Fatal(err)
	}
	return c.CertificateID
}

func sha1Hex(c tls.Certificate) string {
	s := sha1.Sum(c.Certificate[0])
	return hex.EncodeToString(s[:])
}

func sha256Hex(c tls.Certificate) string {
	s := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(s[:])
}

// rawConn dials the plain listener for tests that must drop the TCP
// connection without a DISCONNECT.
func (e *env) rawConn() net.Conn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func isValidation(err error) bool {
	var v *registry.ValidationError
	return errors.As(err, &v)
}
