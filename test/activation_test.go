package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// An activation centre and two regions, three iotgate processes with
// their own stores on loopback (issue 23). Devices know only the
// centre's address; they pre-authenticate there the way Alibaba's C SDK
// 3.0.1 does (iotkit-embedded src/infra/infra_preauth.c: POST
// /auth/devicename, form in its fixed order, HMAC-SHA256 upper-case
// sign) and connect to the region it names with iotId/iotToken
// (securemode=-1), as that SDK's MQTT client does. The npm
// alibabacloud-iot-device-sdk has neither pre-auth nor bootstrap (its
// only endpoints are brokerUrl and registerURL), so the client is ours,
// built from the C SDK's form.
//
// A device that bootstraps (Alibaba, unsigned) connects with Alibaba's
// Node SDK to the region named; a Huawei-style device bootstraps over
// MQTT with Paho and connects to the address it is given.
//
// Rules: source 127.0.0.2/32 → r2, product a1PKB → r2, default r1. All
// devices are made in r1 (the "factory" region); first contact moves
// those whose rule says r2.
func TestActivationCentreE2E(t *testing.T) {
	const token = "region-token-0123456789"
	r1, r1Listen := startRegion(t, token)
	r2, r2Listen := startRegion(t, token)
	for _, g := range []*Gate{r1, r2} {
		g.aliProduct("a1PKA", "prodSecretA", false, false, "")
		g.aliProduct("a1PKB", "prodSecretB", false, false, "")
		g.CreateProduct("hwmeter", "MQTT")
	}
	idA := r1.aliDevice("a1PKA", "devA", "secretA-0123456789", false)
	idB := r1.aliDevice("a1PKB", "devB", "secretB-0123456789", false)
	idC := r1.aliDevice("a1PKA", "devC", "secretC-0123456789", false)

	host := func(g *Gate) (string, int) {
		h, p, _ := net.SplitHostPort(g.MQTT)
		var port int
		fmt.Sscan(p, &port)
		return h, port
	}
	h1, p1 := host(r1)
	h2, p2 := host(r2)
	centre, ports := startCentre(t, []string{"tcp", "tcp", "tcp"}, func(ports []string) string {
		return fmt.Sprintf(`activation:
  role: centre
  listen: %q
  mqtt_listen: %q
  tls_listen: %q
  sweep_interval: 200ms
  default_region: r1
  regions:
    - {id: r1, url: "http://%s", token: %s, mqtt_host: %q, mqtt_port: %d}
    - {id: r2, url: "http://%s", token: %s, mqtt_host: %q, mqtt_port: %d}
  rules:
    - source_cidr: 127.0.0.2/32
      region: r2
    - product_key: a1PKB
      region: r2
`, ports[0], ports[1], ports[2], r1Listen, token, h1, p1, r2Listen, token, h2, p2)
	})

	// Device A, from 127.0.0.2: the source rule sends it to r2.
	devA := &preAuthDevice{pk: "a1PKA", dn: "devA", secret: "secretA-0123456789", from: "127.0.0.2"}
	grant := devA.preAuth(t, centre.url)
	if grant.Host != h2 || grant.Port != p2 || grant.IotID != idA {
		t.Fatalf("device A: %+v, want %s:%d and iotId %s", grant, h2, p2, idA)
	}
	a := devA.connect(t, grant)
	r2.waitStatus(idA, "ONLINE")
	if st, _ := r1.Do("GET", r1.P("/devices/"+idA), nil); st != http.StatusNotFound {
		t.Fatalf("r1 still holds device A after its first contact: HTTP %d", st)
	}
	ans := a.request(t, "/sys/a1PKA/devA/thing/event/property/post",
		map[string]any{"id": "1", "version": "1.0", "method": "thing.event.property.post", "params": map[string]any{"Power": 7}})
	if ans["code"] != 200.0 {
		t.Fatalf("property post in r2: %v", ans)
	}

	// Device B, from 127.0.0.1: the product rule sends it to r2.
	devB := &preAuthDevice{pk: "a1PKB", dn: "devB", secret: "secretB-0123456789", from: "127.0.0.1"}
	if g := devB.preAuth(t, centre.url); g.Port != p2 || g.IotID != idB {
		t.Fatalf("device B: %+v, want port %d", g, p2)
	} else {
		devB.connect(t, g).Disconnect(0)
	}
	// Device C, from 127.0.0.1, matches no rule: default r1, where it is.
	// It asks over HTTPS (iotkit's port 443), trusting the centre's CA.
	devC := &preAuthDevice{pk: "a1PKA", dn: "devC", secret: "secretC-0123456789", from: "127.0.0.1",
		roots: centre.caPool(t)}
	if g := devC.preAuth(t, "https://localhost:"+strings.Split(ports[2], ":")[1]); g.Port != p1 || g.IotID != idC {
		t.Fatalf("device C: %+v, want port %d", g, p1)
	}

	// Device D bootstraps (unsigned) from 127.0.0.1: the product rule
	// sends it to r2, where Alibaba's Node SDK connects with its secret.
	idD := r1.aliDevice("a1PKB", "devD", "secretD-0123456789", false)
	wantDirectory := 4 // devices A, B, C and E; D too when the Node SDK bootstraps it
	if res := nodeBootstrap(t, centre.url, "a1PKB", "devD", "secretD-0123456789", 9); res != nil {
		wantDirectory++
		if res.Port != p2 || res.Bytes > 191 || res.PostReply != 200 {
			t.Fatalf("bootstrap with the Node SDK: %+v, want port %d", res, p2)
		}
		sh := r2.MustDo(http.StatusOK, "GET", r2.P("/devices/"+idD+"/shadow"), nil)
		if p := sh["shadow"].([]any)[0].(map[string]any)["reported"].(map[string]any)["properties"].(map[string]any); p["Power"] != 9.0 {
			t.Fatalf("r2 shadow of device D %v", sh)
		}
		if st, _ := r1.Do("GET", r1.P("/devices/"+idD), nil); st != http.StatusNotFound {
			t.Fatalf("r1 still holds device D: HTTP %d", st)
		}
	}

	// Device E, Huawei-style, bootstraps over MQTT (Paho) from 127.0.0.2:
	// the source rule sends it to r2, where it connects as to IoTDA.
	idE := r1.MustDo(http.StatusCreated, "POST", r1.P("/devices"), map[string]any{"product_id": "hwmeter", "node_id": "meterE",
		"auth_info": map[string]any{"secret": "secretE-0123456789", "secure_access": false}})["device_id"].(string)
	if addr := huaweiBootstrap(t, r1, ports[1], "127.0.0.2", idE, "secretE-0123456789+wrong"); addr != "" {
		t.Fatalf("bootstrap with a wrong secret answered %s", addr)
	}
	addr := huaweiBootstrap(t, r1, ports[1], "127.0.0.2", idE, "secretE-0123456789")
	if addr != r2.MQTT {
		t.Fatalf("Huawei bootstrap: address %q, want r2's %s\ncentre logs:\n%s", addr, r2.MQTT, centre.logs())
	}
	o := r2.huaweiOptions(idE, "secretE-0123456789")
	o.Servers = nil
	e := paho.NewClient(o.AddBroker("tcp://" + addr))
	if tok := e.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device E at %s: %v\nr2 logs:\n%s\ncentre logs:\n%s", addr, tok.Error(), r2.Logs(), centre.logs())
	}
	r2.waitStatus(idE, "ONLINE")
	e.Disconnect(0)
	if st, _ := r1.Do("GET", r1.P("/devices/"+idE), nil); st != http.StatusNotFound {
		t.Fatalf("r1 still holds device E: HTTP %d", st)
	}

	// Refusals answer with Alibaba's codes.
	bad := &preAuthDevice{pk: "a1PKA", dn: "devC", secret: "wrong", from: "127.0.0.1"}
	if code, _ := bad.post(t, centre.url); code != 401 {
		t.Fatalf("wrong sign: code %v", code)
	}
	ghost := &preAuthDevice{pk: "a1PKA", dn: "ghost", secret: "x", from: "127.0.0.1"}
	if code, _ := ghost.post(t, centre.url); code != 5001 {
		t.Fatalf("unknown device: code %v", code)
	}
	// A forged token gets CONNACK 3 at the region.
	if c, code := dialRegion(t, r2.MQTT, devA.clientID(), idA, grant.IotToken+"x"); c != nil || code != 3 {
		t.Fatalf("forged iotToken: CONNACK %d", code)
	}

	// moveRegion: A is online in r2; the operator moves it to r1.
	st, out := centre.admin(t, r1.Token, "/v5/iot/proj1/devices/"+idA+"/action?action_id=moveRegion", `{"region_id":"r1"}`)
	if st != http.StatusOK || out["region_id"] != "r1" {
		t.Fatalf("moveRegion: HTTP %d %v\ncentre logs:\n%s", st, out, centre.logs())
	}
	// First its new endpoint, with an iotToken r1 issued
	// (thing.bootstrap.config.push, as iotkit's redirect-region handler
	// reads it), then the notify (for SDKs that bootstrap again). Paho
	// runs handlers unordered, so the two are told apart by topic.
	push, notify := a.next(t), a.next(t)
	if strings.HasSuffix(push.Topic(), "/notify") {
		push, notify = notify, push
	}
	var pu struct {
		ID, Version, Method string
		Params              struct {
			IotID    string `json:"iotId"`
			Endpoint struct {
				MQTT struct {
					Host  string `json:"host"`
					Port  int    `json:"port"`
					Token string `json:"token"`
				} `json:"mqtt"`
			} `json:"endpoint"`
		}
	}
	if err := json.Unmarshal(push.Payload(), &pu); err != nil || push.Topic() != "/sys/a1PKA/devA/thing/bootstrap/config/push" ||
		pu.Method != "thing.bootstrap.config.push" || pu.Params.IotID != idA || pu.Params.Endpoint.MQTT.Host != h1 ||
		pu.Params.Endpoint.MQTT.Port != p1 || pu.Params.Endpoint.MQTT.Token == "" {
		t.Fatalf("config push %s: %s (%v)", push.Topic(), push.Payload(), err)
	}
	var n struct {
		ID, Version, Method string
		Params              map[string]int
	}
	if err := json.Unmarshal(notify.Payload(), &n); err != nil || notify.Topic() != "/sys/a1PKA/devA/thing/bootstrap/notify" ||
		n.Method != "thing.bootstrap.notify" || n.Version != "1.0" || n.Params["cmd"] != 0 {
		t.Fatalf("notify %s: %s (%v)", notify.Topic(), notify.Payload(), err)
	}
	a.publish(t, "/sys/a1PKA/devA/thing/bootstrap/config/push_reply", `{"id":`+pu.ID+`,"code":200,"data":{}}`)
	a.publish(t, "/sys/a1PKA/devA/thing/bootstrap/notify_reply", `{"id":"`+n.ID+`","code":200,"data":{}}`)
	a.Disconnect(100)
	// The pushed token is r1's: r2 refuses it.
	if c, code := dialRegion(t, r2.MQTT, devA.clientID(), idA, pu.Params.Endpoint.MQTT.Token); c != nil || code != 3 {
		t.Fatalf("the pushed iotToken at the old region: CONNACK %d", code)
	}
	// Asking the centre again gives the same region.
	if g := devA.preAuth(t, centre.url); g.Port != p1 {
		t.Fatalf("after the move: %+v, want port %d", g, p1)
	}
	// The device connects where the push said, with what it carried.
	grant = preAuthGrant{IotID: pu.Params.IotID, IotToken: pu.Params.Endpoint.MQTT.Token, Host: pu.Params.Endpoint.MQTT.Host,
		Port: pu.Params.Endpoint.MQTT.Port}
	a = devA.connect(t, grant)
	r1.waitStatus(idA, "ONLINE")
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := r2.Do("GET", r2.P("/devices/"+idA), nil)
		if st == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("r2 still holds device A after it connected in r1: HTTP %d\ncentre logs:\n%s", st, centre.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Its data is now made in r1; r2 kept none of it.
	if ans := a.request(t, "/sys/a1PKA/devA/thing/event/property/post",
		map[string]any{"id": "2", "version": "1.0", "method": "thing.event.property.post", "params": map[string]any{"Power": 8}}); ans["code"] != 200.0 {
		t.Fatalf("property post in r1: %v", ans)
	}
	sh := r1.MustDo(http.StatusOK, "GET", r1.P("/devices/"+idA+"/shadow"), nil)
	if p := sh["shadow"].([]any)[0].(map[string]any)["reported"].(map[string]any)["properties"].(map[string]any); p["Power"] != 8.0 {
		t.Fatalf("r1 shadow %v", sh)
	}
	if st, _ := r2.Do("GET", r2.P("/devices/"+idA+"/shadow"), nil); st != http.StatusNotFound {
		t.Fatalf("r2 still answers for device A's shadow: HTTP %d", st)
	}

	// The centre's store holds the directory and nothing else: no
	// secret, no device record, no data.
	centre.stop(t)
	keys := centre.storeKeys(t)
	dirEntries := 0
	for k, v := range keys {
		if !strings.HasPrefix(k, "act/") {
			t.Errorf("centre store holds %q, outside the directory", k)
		}
		if strings.HasPrefix(k, "act/d/") {
			dirEntries++
		}
		for _, s := range []string{"secretA", "secretB", "secretC", "secretD", "secretE", "Power"} {
			if strings.Contains(v, s) {
				t.Errorf("centre store key %q holds %q", k, s)
			}
		}
	}
	if dirEntries != wantDirectory {
		t.Errorf("centre directory has %d devices, want %d: %v", dirEntries, wantDirectory, keys)
	}
	for _, g := range []*Gate{r1, r2} {
		if logs := g.Logs(); strings.Contains(logs, "secretA-0123456789") || strings.Contains(logs, grant.IotToken) {
			t.Error("a region's log holds a secret or a token")
		}
	}
}

// preAuthDevice is an Alibaba device built with iotkit 3.0.1's
// MQTT_PRE_AUTH: it knows the centre, its triple, and which local
// address it sends from.
type preAuthDevice struct {
	pk, dn, secret, from string
	roots                *x509.CertPool // for an https:// centre
}

type preAuthGrant struct {
	IotID, IotToken, Host string
	Port                  int
}

func (d *preAuthDevice) clientID() string {
	return d.pk + "." + d.dn + "|timestamp=2524608000000,_v=sdk-c-3.0.1,securemode=-1,signmethod=hmacsha256,lan=C,gw=0,ext=0|"
}

// post sends the pre-auth and returns the answer's code and body.
func (d *preAuthDevice) post(t *testing.T, centre string) (float64, map[string]any) {
	t.Helper()
	cid := d.pk + "." + d.dn
	sign := strings.ToUpper(hmacHex(sha256.New, d.secret, "clientId"+cid+"deviceName"+d.dn+"productKey"+d.pk+"timestamp2524608000000"))
	// Not URL-encoded, in the SDK's order (_preauth_assemble_auth_req_string).
	form := "productKey=" + d.pk + "&deviceName=" + d.dn + "&signmethod=hmacsha256&sign=" + sign +
		"&version=default&clientId=" + cid + "&timestamp=2524608000000&resources=mqtt"
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(d.from)}}).DialContext, TLSClientConfig: &tls.Config{RootCAs: d.roots}}}
	req, _ := http.NewRequest(http.MethodPost, centre+"/auth/devicename", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	req.Header.Set("Accept", "text/xml,text/javascript,text/html,application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) >= 300 {
		t.Fatalf("pre-auth answer of %d bytes overflows iotkit's 300-byte buffer: %s", len(raw), raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("pre-auth answer %q: %v", raw, err)
	}
	code, _ := out["code"].(float64)
	return code, out
}

func (d *preAuthDevice) preAuth(t *testing.T, centre string) preAuthGrant {
	t.Helper()
	code, out := d.post(t, centre)
	if code != 200 {
		t.Fatalf("pre-auth of %s: %v", d.dn, out)
	}
	data := out["data"].(map[string]any)
	mqtt := data["resources"].(map[string]any)["mqtt"].(map[string]any)
	return preAuthGrant{IotID: data["iotId"].(string), IotToken: data["iotToken"].(string),
		Host: mqtt["host"].(string), Port: int(mqtt["port"].(float64))}
}

func (d *preAuthDevice) connect(t *testing.T, g preAuthGrant) *aliClient {
	t.Helper()
	c, code := dialRegion(t, net.JoinHostPort(g.Host, fmt.Sprint(g.Port)), d.clientID(), g.IotID, g.IotToken)
	if c == nil {
		t.Fatalf("connect %s with its iotToken: CONNACK %d", d.dn, code)
	}
	return c
}

// dialRegion is the CONNECT iotkit sends after a pre-auth.
func dialRegion(t *testing.T, addr, clientID, iotID, iotToken string) (*aliClient, byte) {
	t.Helper()
	c := &aliClient{msgs: make(chan paho.Message, 64), lost: make(chan error, 1)}
	o := paho.NewClientOptions().SetClientID(clientID).SetUsername(iotID).SetPassword(iotToken).AddBroker("tcp://" + addr).
		SetKeepAlive(60 * time.Second).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(false).SetCleanSession(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err })
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.(*paho.ConnectToken).ReturnCode()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, 0
}

// startRegion starts a gate in activation role region and returns it and
// the address its region API listens on.
func startRegion(t *testing.T, token string) (*Gate, string) {
	t.Helper()
	g := StartGate(t, GateOptions{ExtraAddr: func(addr string) string {
		return fmt.Sprintf("activation:\n  role: region\n  listen: %q\n  token: %s\n", addr, token)
	}})
	return g, g.ExtraAddr
}

// centreProc is a running activation centre (activation.role centre).
type centreProc struct {
	url     string
	dataDir string
	cmd     *exec.Cmd
	exited  <-chan error // the process's Wait result
	mu      sync.Mutex
	out     bytes.Buffer
}

func startCentre(t *testing.T, networks []string, activation func(addrs []string) string) (*centreProc, []string) {
	t.Helper()
	// The ports are picked right before the start and picked again when
	// another process took one in between (the kernel hands the same
	// ephemeral range to outgoing connections).
	for attempt := 1; ; attempt++ {
		addrs := freePorts(t, networks...)
		c, busy := tryCentre(t, addrs[0], activation(addrs))
		if c != nil {
			return c, addrs
		}
		if !busy || attempt == 5 {
			t.Fatalf("centre did not start (attempt %d)", attempt)
		}
	}
}

// tryCentre starts a centre whose API listens on addr; it returns nil and
// whether a listener found its address taken when the centre exited.
func tryCentre(t *testing.T, addr, activation string) (*centreProc, bool) {
	t.Helper()
	dir := t.TempDir()
	c := &centreProc{dataDir: filepath.Join(dir, "data")}
	c.url = "http://" + addr
	cfg := fmt.Sprintf("data_dir: %q\nlog_level: debug\napi:\n  credentials:\n    - project_id: proj1\n      token: token-proj1-0123456789\n%s%s",
		c.dataDir, testStore(""), activation)
	path := filepath.Join(dir, "iotgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(binary(t), "-config", path)
	w := &lockedWriter{mu: &c.mu, b: &c.out}
	c.cmd.Stdout, c.cmd.Stderr = w, w
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()
	c.exited = exited
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			c.cmd = nil
			if strings.Contains(c.logs(), "address already in use") {
				t.Logf("centre found a port taken; picking others:\n%s", lastLines(c.logs(), 3))
				return nil, true
			}
			t.Logf("centre exited at start; logs:\n%s", c.logs())
			return nil, false
		default:
		}
		if resp, err := http.Get(c.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(func() { c.stop(t) })
				return c, false
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = c.cmd.Process.Kill()
	<-exited
	c.cmd = nil
	t.Logf("centre did not answer /healthz within 30 s; logs:\n%s", c.logs())
	return nil, false
}

// caPool trusts the centre's generated CA (data_dir/tls/ca.pem).
func (c *centreProc) caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(c.dataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in the centre's ca.pem")
	}
	return roots
}

func (c *centreProc) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *centreProc) stop(t *testing.T) {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := c.exited
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("centre exited with %v; logs:\n%s", err, c.logs())
		}
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		t.Errorf("centre did not stop within 20 s of SIGTERM")
	}
	c.cmd = nil
}

func (c *centreProc) admin(t *testing.T, token, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.url+path, strings.NewReader(body))
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// storeKeys reads the stopped centre's whole store.
func (c *centreProc) storeKeys(t *testing.T) map[string]string {
	t.Helper()
	s, err := badgerkv.Open(badgerkv.Options{Dir: filepath.Join(c.dataDir, "db"), Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := map[string]string{}
	err = s.View(context.Background(), func(rd kv.Reader) error {
		return rd.Scan(nil, nil, false, func(k, v []byte) (bool, error) {
			keys[string(k)] = string(v)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

type nodeBootstrapResult struct {
	Host      string `json:"host"`
	Port      int    `json:"port"`
	Bytes     int    `json:"bytes"`
	PostReply int    `json:"postReply"`
}

// nodeBootstrap runs node/alibaba-bootstrap.js; nil (after a log line)
// when node or the SDK is missing outside CI.
func nodeBootstrap(t *testing.T, centre, pk, dn, secret string, power int) *nodeBootstrapResult {
	t.Helper()
	script, err := filepath.Abs("node/alibaba-bootstrap.js")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "alibabacloud-iot-device-sdk", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node or alibabacloud-iot-device-sdk missing (CI must run: npm ci --prefix test/node): %v", err)
		}
		t.Logf("skipping the Node SDK bootstrap: %v (run: npm ci --prefix test/node)", err)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, centre, pk, dn, secret, fmt.Sprint(power))
	cmd.Dir, cmd.Env = filepath.Dir(script), nodeEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node bootstrap: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var res nodeBootstrapResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node bootstrap output %q: %v", out, err)
	}
	return &res
}

// huaweiBootstrap is a Huawei IoTDP bootstrap over MQTT with Paho, from
// the local address from: connect as to IoTDA, subscribe to
// $oc/devices/{id}/sys/bootstrap/down, publish an empty request on
// .../up; it returns the answer's address, or "" when the CONNECT is
// refused.
func huaweiBootstrap(t *testing.T, g *Gate, centre, from, id, secret string) string {
	t.Helper()
	msgs := make(chan paho.Message, 4)
	o := g.huaweiOptions(id, secret)
	o.Servers = nil
	o.AddBroker("tcp://" + centre).SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return ""
	}
	defer c.Disconnect(0)
	down := "$oc/devices/" + id + "/sys/bootstrap/down"
	if tok := c.Subscribe(down, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", down, tok.Error())
	}
	if tok := c.Publish("$oc/devices/"+id+"/sys/bootstrap/up", 1, false, ""); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("bootstrap request: %v", tok.Error())
	}
	select {
	case m := <-msgs:
		var ans struct {
			Address string `json:"address"`
		}
		if m.Topic() != down || json.Unmarshal(m.Payload(), &ans) != nil {
			t.Fatalf("bootstrap answer on %s: %s", m.Topic(), m.Payload())
		}
		return ans.Address
	case <-time.After(10 * time.Second):
		t.Fatal("no bootstrap answer")
		return ""
	}
}
