package test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interop tests: the real binary against Debian's mosquitto-clients
// (mosquitto_pub, mosquitto_sub), with IoTDA credentials computed here.

// requireTool finds an external client. Outside CI a missing tool skips
// the test; in CI (CI set) it fails it, since CI installs the packages
// listed in .ci/packages.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; CI must install Debian package mosquitto-clients (listed in .ci/packages)", name)
	}
	t.Skipf("%s is not installed (apt-get install mosquitto-clients); skipping the interop test", name)
	return ""
}

// mqttDevice is a device and the mosquitto arguments that authenticate it.
type mqttDevice struct {
	id, secret string
	g          *Gate
}

// createMQTTDevice registers a SECRET device of a new MQTT product.
func createMQTTDevice(t *testing.T, g *Gate, product, node string, secureAccess bool) *mqttDevice {
	t.Helper()
	g.CreateProduct(product, "MQTT")
	const secret = "interopSecret01"
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": node, "product_id": product,
		"auth_info": map[string]any{"secret": secret, "secure_access": secureAccess}})
	return &mqttDevice{id: product + "_" + node, secret: secret, g: g}
}

// args are mosquitto's connection arguments for the device over plain
// MQTT (tls false) or MQTTS with the generated CA.
func (d *mqttDevice) args(tls bool) []string {
	ts := time.Now().UTC().Format("2006010215")
	m := hmac.New(sha256.New, []byte(ts))
	m.Write([]byte(d.secret))
	return append(hostArgs(d.g, tls), "-i", d.id+"_0_0_"+ts, "-u", d.id, "-P", hex.EncodeToString(m.Sum(nil)), "-k", "60")
}

func hostArgs(g *Gate, tls bool) []string {
	addr := g.MQTT
	if tls {
		addr = g.MQTTS
	}
	host, port, _ := net.SplitHostPort(addr)
	a := []string{"-h", host, "-p", port}
	if tls {
		a = append(a, "--cafile", filepath.Join(g.DataDir, "data", "tls", "ca.pem"))
	}
	return a
}

// run runs a mosquitto client to completion.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, requireTool(t, name), args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := run(t, name, args...); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestMQTTInteropSecret(t *testing.T) {
	requireTool(t, "mosquitto_pub")
	g := StartGate(t, GateOptions{})
	d := createMQTTDevice(t, g, "meterp", "n1", false)
	topic := "$oc/devices/" + d.id

	// A property report over 1883 shows in the shadow.
	mustRun(t, "mosquitto_pub", append(d.args(false), "-q", "1", "-t", topic+"/sys/properties/report",
		"-m", `{"services":[{"service_id":"Meter","properties":{"power":42},"event_time":"20250414T013000Z"}]}`)...)
	sh := g.MustDo(200, "GET", g.P("/devices/"+d.id+"/shadow"), nil)
	svc := sh["shadow"].([]any)[0].(map[string]any)
	if svc["service_id"] != "Meter" || svc["reported"].(map[string]any)["properties"].(map[string]any)["power"] != 42.0 {
		t.Fatalf("shadow %v", sh)
	}

	// MQTT 5 works too; the message is kept and readable over REST.
	mustRun(t, "mosquitto_pub", append(d.args(false), "-V", "5", "-q", "1", "-t", topic+"/sys/messages/up", "-m", "hello v5")...)
	msgs := g.MustDo(200, "GET", g.P("/devices/"+d.id+"/device-messages"), nil)["messages"].([]any)
	if len(msgs) != 1 || decode64(t, msgs[0].(map[string]any)["payload"]) != "hello v5" {
		t.Fatalf("messages %v", msgs)
	}

	// Refusals carry IoTDA's codes, which mosquitto spells out.
	bad := append(hostArgs(g, false), "-i", d.id+"_0_0_2025041401", "-u", d.id,
		"-P", strings.Repeat("0", 64), "-t", topic+"/sys/messages/up", "-m", "x")
	if out, err := run(t, "mosquitto_pub", bad...); err == nil || !strings.Contains(strings.ToLower(out), "bad user name or password") {
		t.Fatalf("wrong password: %v %q", err, out)
	}
	badID := append(d.args(false), "-i", d.id)
	if out, err := run(t, "mosquitto_pub", append(badID, "-t", topic+"/sys/messages/up", "-m", "x")...); err == nil ||
		!strings.Contains(strings.ToLower(out), "identifier rejected") {
		t.Fatalf("malformed ClientId: %v %q", err, out)
	}
	if st, body := g.Do("POST", g.P("/devices/"+d.id+"/freeze"), nil); st >= 300 {
		t.Fatalf("freeze: %d %v", st, body)
	}
	if out, err := run(t, "mosquitto_pub", append(d.args(false), "-t", topic+"/sys/messages/up", "-m", "x")...); err == nil ||
		!strings.Contains(strings.ToLower(out), "not authori") {
		t.Fatalf("frozen: %v %q", err, out)
	}
}

func TestMQTTInteropTLS(t *testing.T) {
	requireTool(t, "mosquitto_pub")
	g := StartGate(t, GateOptions{})
	d := createMQTTDevice(t, g, "meters", "n1", true)
	topic := "$oc/devices/" + d.id + "/sys/messages/up"

	// A 1 MiB message, the largest allowed, over MQTTS with the
	// generated CA.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mosquitto_pub", append(d.args(true), "-q", "1", "-t", topic, "-f", big)...)
	msgs := g.MustDo(200, "GET", g.P("/devices/"+d.id+"/device-messages"), nil)["messages"].([]any)
	if len(msgs) != 1 || len(decode64(t, msgs[0].(map[string]any)["payload"])) != 1<<20 {
		t.Fatalf("1 MiB message not stored: %d messages", len(msgs))
	}

	// secure_access: the same credentials over plain MQTT are refused.
	if out, err := run(t, "mosquitto_pub", append(d.args(false), "-t", topic, "-m", "x")...); err == nil ||
		!strings.Contains(strings.ToLower(out), "bad user name or password") {
		t.Fatalf("secure_access device over 1883: %v %q", err, out)
	}
	if !strings.Contains(g.Logs(), filepath.Join(g.DataDir, "data", "tls", "ca.pem")) {
		t.Fatal("the generated CA's path is not logged")
	}
}

func TestMQTTInteropX509(t *testing.T) {
	requireTool(t, "mosquitto_pub")
	g := StartGate(t, GateOptions{})
	g.CreateProduct("camx", "MQTT")
	dir := t.TempDir()

	caKey, ca := newCert(t, "Interop Device CA", nil, nil)
	up := g.MustDo(201, "POST", g.P("/certificates"), map[string]any{"content": pemCert(ca)})
	_, proof := newCert(t, up["verify_code"].(string), ca, caKey)
	g.MustDo(200, "POST", g.P("/certificates/"+up["certificate_id"].(string)+"/action?action_id=verify"),
		map[string]any{"verify_content": pemCert(proof)})

	leafKey, leaf := newCert(t, "camx_n1", ca, caKey)
	fp := sha1.Sum(leaf.Raw)
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "camx",
		"auth_info": map[string]any{"auth_type": "CERTIFICATES", "fingerprint": strings.ToUpper(hex.EncodeToString(fp[:]))}})
	certFile, keyFile := filepath.Join(dir, "dev.pem"), filepath.Join(dir, "dev-key.pem")
	writePEM(t, certFile, "CERTIFICATE", leaf.Raw)
	kb, _ := x509.MarshalECPrivateKey(leafKey)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)

	id := "camx_n1"
	ts := time.Now().UTC().Format("2006010215")
	args := append(hostArgs(g, true), "-i", id+"_0_0_"+ts, "-u", id, "--cert", certFile, "--key", keyFile)
	mustRun(t, "mosquitto_pub", append(args, "-q", "1", "-t", "$oc/devices/"+id+"/sys/messages/up", "-m", "by certificate")...)
	msgs := g.MustDo(200, "GET", g.P("/devices/"+id+"/device-messages"), nil)["messages"].([]any)
	if len(msgs) != 1 || decode64(t, msgs[0].(map[string]any)["payload"]) != "by certificate" {
		t.Fatalf("messages %v", msgs)
	}

	// A certificate from another CA is refused.
	otherKey, other := newCert(t, "Other CA", nil, nil)
	strayKey, stray := newCert(t, id, other, otherKey)
	writePEM(t, certFile, "CERTIFICATE", stray.Raw)
	kb, _ = x509.MarshalECPrivateKey(strayKey)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	if out, err := run(t, "mosquitto_pub", append(args, "-t", "$oc/devices/"+id+"/sys/messages/up", "-m", "x")...); err == nil ||
		!strings.Contains(strings.ToLower(out), "not authori") {
		t.Fatalf("certificate of another CA: %v %q", err, out)
	}
	if !strings.Contains(g.Logs(), "client certificate not trusted") {
		t.Fatal("the refusal's reason is not logged")
	}
}

// TestMQTTInteropCommand: a synchronous command issued through REST
// reaches a mosquitto_sub device and returns the response the device
// then publishes with mosquitto_pub.
func TestMQTTInteropCommand(t *testing.T) {
	requireTool(t, "mosquitto_sub")
	g := StartGate(t, GateOptions{})
	commandRoundTrip(t, g, createMQTTDevice(t, g, "meterc", "n1", false))
}

// commandRoundTrip connects d (mosquitto_sub, to the gate d.g) to its
// commands, sends it a synchronous command through the REST API of send
// (another node of a cluster, or d.g), answers it with mosquitto_pub and
// checks that the REST call returns the device's response.
func commandRoundTrip(t *testing.T, send *Gate, d *mqttDevice) {
	t.Helper()
	topic := "$oc/devices/" + d.id + "/sys/commands/"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, requireTool(t, "mosquitto_sub"),
		append(d.args(false), "-v", "-C", "1", "-W", "25", "-t", topic+"#")...)
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sub.Stderr = os.Stderr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Wait()
	waitOnline(t, send, d.id)

	type answer struct {
		status int
		body   map[string]any
	}
	resp := make(chan answer, 1)
	go func() {
		st, body := send.Do("POST", send.P("/devices/"+d.id+"/commands"),
			map[string]any{"service_id": "Power", "command_name": "reboot", "paras": map[string]any{"delay": 1}})
		resp <- answer{st, body}
	}()

	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("mosquitto_sub got no command: %v\nsending gate:\n%s", err, send.Logs())
	}
	gotTopic, payload, _ := strings.Cut(strings.TrimSpace(line), " ")
	requestID, ok := strings.CutPrefix(gotTopic, topic+"request_id=")
	if !ok {
		t.Fatalf("command on topic %q", gotTopic)
	}
	var cmd map[string]any
	if err := json.Unmarshal([]byte(payload), &cmd); err != nil || cmd["command_name"] != "reboot" || cmd["object_device_id"] != d.id {
		t.Fatalf("command body %q", payload)
	}
	mustRun(t, "mosquitto_pub", append(d.args(false), "-q", "1", "-t", topic+"response/request_id="+requestID,
		"-m", `{"result_code":0,"response_name":"reboot","paras":{"done":true}}`)...)

	a := <-resp
	if a.status != 200 || a.body["command_id"] != requestID {
		t.Fatalf("REST answer %d %v", a.status, a.body)
	}
	r, _ := a.body["response"].(map[string]any)
	if r["result_code"] != 0.0 || r["paras"].(map[string]any)["done"] != true {
		t.Fatalf("response %v", a.body)
	}
}

// TestMQTTInteropMessageDown: a downlink message through REST reaches
// mosquitto_sub in IoTDA's standard format.
func TestMQTTInteropMessageDown(t *testing.T) {
	requireTool(t, "mosquitto_sub")
	g := StartGate(t, GateOptions{})
	d := createMQTTDevice(t, g, "meterm", "n1", false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, requireTool(t, "mosquitto_sub"),
		append(d.args(false), "-C", "1", "-W", "25", "-t", "$oc/devices/"+d.id+"/sys/messages/down")...)
	var got strings.Builder
	sub.Stdout = &got
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	waitOnline(t, g, d.id)
	// A custom topic the device has not subscribed to is refused.
	st, body := g.Do("POST", g.P("/devices/"+d.id+"/messages"), map[string]any{"message": "x", "topic": "display"})
	if st != 400 || body["error_code"] != "IOTDA.014112" {
		t.Fatalf("unsubscribed custom topic: %d %v", st, body)
	}
	out := g.MustDo(201, "POST", g.P("/devices/"+d.id+"/messages"), map[string]any{"message_id": "m-1", "name": "greeting", "message": "hello"})
	if out["result"].(map[string]any)["status"] != "DELIVERED" {
		t.Fatalf("message status %v", out)
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got.String()), &m); err != nil || m["object_device_id"] != d.id ||
		m["id"] != "m-1" || m["name"] != "greeting" || m["content"] != "hello" {
		t.Fatalf("device got %q", got.String())
	}
}

func waitOnline(t *testing.T, g *Gate, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if d := g.MustDo(200, "GET", g.P("/devices/"+id), nil); d["status"] == "ONLINE" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("device %s did not come online; logs:\n%s", id, g.Logs())
}

func decode64(t *testing.T, v any) string {
	t.Helper()
	s, _ := v.(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("payload %v: %v", v, err)
	}
	return string(b)
}

// newCert makes a certificate: a self-signed CA when parent is nil, else
// a client certificate signed by parent.
func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func pemCert(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func writePEM(t *testing.T, name, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
