package test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// lwm2mRegions starts two regions with CoAP products nb and nb2, an
// activation centre whose LwM2M Bootstrap server listens on UDP (NoSec)
// and DTLS, with the rule product nb2 → r2 (default r1), and returns
// them and the bootstrap addresses. Devices are made in r1 (the
// "factory" region). centreYAML are more activation keys of the centre
// ("  key: value\n").
func lwm2mRegions(t *testing.T, centreYAML ...string) (r1, r2 *Gate, centre *centreProc, bootstrap, bootstrapDTLS string) {
	t.Helper()
	const token = "region-token-0123456789"
	r1, r1Listen := startRegion(t, token)
	r2, r2Listen := startRegion(t, token)
	for _, g := range []*Gate{r1, r2} {
		g.CreateProduct("nb", "CoAP")
		g.CreateProduct("nb2", "CoAP")
	}
	region := func(id, url string, g *Gate) string {
		return fmt.Sprintf(`    - {id: %s, url: "http://%s", token: %s, mqtt_host: 127.0.0.1, mqtt_port: 1883, lwm2m_uri: "coap://%s", lwm2m_secure_uri: "coaps://%s"}
`, id, url, token, g.CoAP, g.DTLS)
	}
	centre, ports := startCentre(t, []string{"tcp", "udp", "udp"}, func(ports []string) string {
		return fmt.Sprintf(`activation:
  role: centre
  listen: %q
  bootstrap_listen: %q
  bootstrap_dtls_listen: %q
%s  default_region: r1
  regions:
%s%s  rules:
    - product_key: nb2
      region: r2
`, ports[0], ports[1], ports[2], strings.Join(centreYAML, ""), region("r1", r1Listen, r1), region("r2", r2Listen, r2))
	})
	return r1, r2, centre, ports[1], ports[2]
}

// coapDevice creates a device of a CoAP product in g with secret
// pskSecret and returns its id.
func coapDevice(t *testing.T, g *Gate, product, node string, secure bool) string {
	t.Helper()
	d := g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": node, "product_id": product,
		"auth_info": map[string]any{"secret": pskSecret, "secure_access": secure}})
	return d["device_id"].(string)
}

// TestActivationLwM2MBootstrapE2E: a device bootstraps at the centre's
// LwM2M Bootstrap server over DTLS-PSK with its bootstrap credential
// (identity = node id, key = its secret) and is written its region's
// coaps URI with PSK identity = node id and key = its secret; it then
// registers over DTLS-PSK in that region with what it was written. A
// device of product nb2 is moved to r2 by the product rule; one of nb
// stays in r1. Over NoSec, the device that needs its PSK is refused and
// the other is written a NoSec account: no key crosses in clear.
func TestActivationLwM2MBootstrapE2E(t *testing.T) {
	r1, r2, centre, bootstrap, bootstrapDTLS := lwm2mRegions(t)
	moved := coapDevice(t, r1, "nb2", "lwbs-moved", true)
	stays := coapDevice(t, r1, "nb", "lwbs-stays", false)
	key, _ := hex.DecodeString(pskSecret)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	if _, err := lwm2mclient.Bootstrap(ctx, bootstrap, "lwbs-moved"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("NoSec bootstrap of a secure-access device: %v, want 4.03", err)
	}
	b, err := lwm2mclient.Bootstrap(ctx, bootstrap, "lwbs-stays")
	if err != nil {
		t.Fatalf("NoSec bootstrap: %v\ncentre:\n%s", err, centre.logs())
	}
	if uri, mode, _, k := b.Account(1); uri != "coap://"+r1.CoAP || mode != 3 || len(k) != 0 {
		t.Errorf("NoSec bootstrap wrote %q mode %d key %x", uri, mode, k)
	}
	cancel()
	// A wrong bootstrap key fails the handshake (pion sends no alert:
	// the client gives up).
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	if _, err := lwm2mclient.BootstrapPSK(ctx, bootstrapDTLS, "lwbs-stays", "lwbs-stays", []byte("wrong-key")); err == nil {
		t.Error("DTLS bootstrap with a wrong key succeeded")
	}
	cancel()

	for _, c := range []struct {
		node, id string
		in, out  *Gate
	}{{"lwbs-moved", moved, r2, r1}, {"lwbs-stays", stays, r1, nil}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		b, err := lwm2mclient.BootstrapPSK(ctx, bootstrapDTLS, c.node, c.node, key)
		cancel()
		if err != nil {
			t.Fatalf("%s: bootstrap: %v\ncentre:\n%s", c.node, err, centre.logs())
		}
		uri, mode, identity, key := b.Account(1)
		if uri != "coaps://"+c.in.DTLS || mode != 0 || identity != c.node || hex.EncodeToString(key) != pskSecret {
			t.Fatalf("%s: written %q mode %d identity %q key %x", c.node, uri, mode, identity, key)
		}
		cl, err := lwm2mclient.Dial(context.Background(), lwm2mclient.Config{Server: strings.TrimPrefix(uri, "coaps://"),
			Endpoint: c.node, PSKIdentity: identity, PSK: key,
			Lifetime: int(b.Values[format.NewPath(1, 0, 1)].Int())})
		if err != nil {
			t.Fatalf("%s: dial region: %v", c.node, err)
		}
		defer cl.Close()
		if err := cl.Register(context.Background()); err != nil {
			t.Fatalf("%s: register in its region: %v", c.node, err)
		}
		c.in.waitStatus(c.id, "ONLINE")
		if c.out != nil {
			if st, _ := c.out.Do("GET", c.out.P("/devices/"+c.id), nil); st != http.StatusNotFound {
				t.Errorf("%s: the old region still holds the device (HTTP %d)", c.node, st)
			}
		}
	}
	// An unknown endpoint is refused with 4.03 and nothing else.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lwm2mclient.Bootstrap(ctx, bootstrap, "nobody"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("unknown endpoint: %v", err)
	}
	// The centre's store holds the directory and no secret.
	centre.stop(t)
	for k, v := range centre.storeKeys(t) {
		if strings.Contains(v, pskSecret) || strings.Contains(v, pskText) {
			t.Errorf("centre store key %s holds the device secret", k)
		}
	}
}

// TestActivationLwM2MBootstrapWakaama: Wakaama's lwm2mclient_tinydtls
// with -b bootstraps over DTLS-PSK at the centre with its bootstrap
// credential (-i node id, -s its key) and registers in the region the
// product rule picks over DTLS-PSK with the identity and key it was
// written.
func TestActivationLwM2MBootstrapWakaama(t *testing.T) {
	bin := wakaamaBinary(t, "WAKAAMA_CLIENT_DTLS")
	r1, r2, centre, _, bootstrapDTLS := lwm2mRegions(t)
	id := coapDevice(t, r1, "nb2", "wakaama-bs", true)
	out := startWakaama(t, r2, bin, bootstrapDTLS, "-n", "wakaama-bs", "-b", "-i", "wakaama-bs", "-s", hex.EncodeToString([]byte(pskText)))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, d := r2.Do("GET", r2.P("/devices/"+id), nil); st == http.StatusOK && d["status"] == "ONLINE" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Wakaama did not register in r2; its output:\n%s\ncentre:\n%s\nr2:\n%s", out(), centre.logs(), r2.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st, _ := r1.Do("GET", r1.P("/devices/"+id), nil); st != http.StatusNotFound {
		t.Errorf("r1 still holds the device (HTTP %d)", st)
	}
}
