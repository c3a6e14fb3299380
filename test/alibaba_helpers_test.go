package test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Helpers for the Alibaba end-to-end tests: products and devices made
// over REST, signs computed here (independently of the server), Go paho
// clients in Alibaba's CONNECT format.

// aliProduct creates an MQTT product with a product secret and the
// Alibaba switches.
func (g *Gate) aliProduct(id, secret string, dynreg, nwl bool, nodeType string) {
	g.t.Helper()
	body := map[string]any{"product_id": id, "name": "Ali " + id, "device_type": "Sensor", "protocol_type": "MQTT",
		"service_capabilities": []any{}, "product_secret": secret, "dynamic_registration": dynreg,
		"preregistration_free": nwl}
	if nodeType != "" {
		body["node_type"] = nodeType
	}
	out := g.MustDo(http.StatusCreated, "POST", g.P("/products"), body)
	if out["product_secret"] != secret || out["dynamic_registration"] != dynreg {
		g.t.Fatalf("product %v", out)
	}
}

// aliDevice creates a device (DeviceName dn) of product pk and returns
// its device id.
func (g *Gate) aliDevice(pk, dn, secret string, secure bool) string {
	g.t.Helper()
	out := g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"product_id": pk, "node_id": dn,
		"auth_info": map[string]any{"secret": secret, "secure_access": secure}})
	return out["device_id"].(string)
}

func hmacHex(h func() hash.Hash, key, msg string) string {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// httpsRegister is Alibaba's HTTPS dynamic registration (reference §3),
// as the C SDK 3 sends it (HMAC-SHA256, upper-case sign, fixed random).
func (g *Gate) httpsRegister(pk, dn, productSecret string) map[string]any {
	g.t.Helper()
	const random = "8Ygb7ULYh53B6OA"
	sign := strings.ToUpper(hmacHex(sha256.New, productSecret, "deviceName"+dn+"productKey"+pk+"random"+random))
	resp, err := g.HTTP().PostForm(g.API+"/auth/register/device", url.Values{"productKey": {pk}, "deviceName": {dn},
		"random": {random}, "sign": {sign}, "signMethod": {"hmacsha256"}})
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		g.t.Fatalf("register answer %q: %v", raw, err)
	}
	return out
}

// aliClient is a Go paho client in Alibaba's CONNECT format.
type aliClient struct {
	paho.Client
	msgs chan paho.Message
	lost chan error
}

// aliConnect dials the gate with the given ClientId, username and
// password (MQTTS when tls) and returns the client, or the CONNACK code.
func (g *Gate) aliConnect(clientID, username, password string, tls bool) (*aliClient, byte) {
	g.t.Helper()
	c := &aliClient{msgs: make(chan paho.Message, 64), lost: make(chan error, 1)}
	o := paho.NewClientOptions().SetClientID(clientID).SetUsername(username).SetPassword(password).
		SetKeepAlive(60 * time.Second).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(false).SetCleanSession(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err })
	if tls {
		o.AddBroker("ssl://" + g.MQTTS).SetTLSConfig(g.tlsConfig())
	} else {
		o.AddBroker("tcp://" + g.MQTT)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		g.t.Fatal("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.(*paho.ConnectToken).ReturnCode()
	}
	g.t.Cleanup(func() { c.Disconnect(0) })
	return c, 0
}

func (g *Gate) mustAliConnect(clientID, username, password string, tls bool) *aliClient {
	g.t.Helper()
	c, code := g.aliConnect(clientID, username, password, tls)
	if c == nil {
		g.t.Fatalf("connect %s as %s: CONNACK 0x%02x; logs:\n%s", clientID, username, code, g.Logs())
	}
	return c
}

// tlsConfig trusts the gate's generated MQTTS CA.
func (g *Gate) tlsConfig() *tls.Config {
	g.t.Helper()
	pem, err := os.ReadFile(filepath.Join(g.DataDir, "data", "tls", "ca.pem"))
	if err != nil {
		g.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		g.t.Fatal("no CA certificate in ca.pem")
	}
	return &tls.Config{RootCAs: roots}
}

// secretConnect connects a device with its DeviceSecret the way the Node
// SDK does (clientId pk&dn, HMAC-SHA1): securemode 3 on plain MQTT, 2 on
// MQTTS.
func (g *Gate) secretConnect(pk, dn, secret string, tls bool) (*aliClient, byte) {
	g.t.Helper()
	cid, ts, mode := pk+"&"+dn, fmt.Sprint(time.Now().UnixMilli()), "3"
	if tls {
		mode = "2"
	}
	return g.aliConnect(cid+"|securemode="+mode+",signmethod=hmacsha1,timestamp="+ts+",lan=Go|", dn+"&"+pk,
		hmacHex(sha1.New, secret, "clientId"+cid+"deviceName"+dn+"productKey"+pk+"timestamp"+ts), tls)
}

// mqttRegister is an MQTT dynamic registration (authType register or
// regnwl) as the C SDK 4 sends it; it returns the result, or the CONNACK
// code.
func (g *Gate) mqttRegister(authType, pk, dn, productSecret string, tls bool) (map[string]string, byte) {
	g.t.Helper()
	random := fmt.Sprint(time.Now().UnixNano())
	c, code := g.aliConnect(dn+"."+pk+"|random="+random+",authType="+authType+",securemode=2,signmethod=hmacsha256|",
		dn+"&"+pk, hmacHex(sha256.New, productSecret, "deviceName"+dn+"productKey"+pk+"random"+random), tls)
	if c == nil {
		return nil, code
	}
	defer c.Disconnect(0)
	m := c.next(g.t)
	var out map[string]string
	if err := json.Unmarshal(m.Payload(), &out); err != nil {
		g.t.Fatalf("registration result %s: %v", m.Payload(), err)
	}
	out["topic"] = m.Topic()
	return out, 0
}

func (c *aliClient) next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message received")
		return nil
	}
}

func (c *aliClient) publish(t testing.TB, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// request publishes an Alink request and returns the answer on its
// _reply topic.
func (c *aliClient) request(t testing.TB, topic string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	c.publish(t, topic, string(b))
	m := c.next(t)
	if m.Topic() != topic+"_reply" {
		t.Fatalf("answer on %s: %s", m.Topic(), m.Payload())
	}
	var out map[string]any
	if err := json.Unmarshal(m.Payload(), &out); err != nil {
		t.Fatalf("answer %s: %v", m.Payload(), err)
	}
	return out
}

// waitStatus polls REST until the device has the status.
func (g *Gate) waitStatus(id, want string) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id), nil)
		if d["status"] == want {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("device %s is %v, want %s", id, d["status"], want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// messages returns a device's kept uplink payloads over REST, newest
// first.
func (g *Gate) messages(id string) []string {
	g.t.Helper()
	out := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id+"/device-messages"), nil)
	var payloads []string
	for _, m := range out["messages"].([]any) {
		b, err := base64.StdEncoding.DecodeString(m.(map[string]any)["payload"].(string))
		if err != nil {
			g.t.Fatalf("message %v: %v", m, err)
		}
		payloads = append(payloads, string(b))
	}
	return payloads
}
