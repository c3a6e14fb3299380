package test

import (
	"context"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// moveLwM2M moves the device to region r2 through the centre's
// moveRegion action.
func moveLwM2M(t *testing.T, centre *centreProc, token, id string) {
	t.Helper()
	st, out := centre.admin(t, token, "/v5/iot/proj1/devices/"+id+"/action?action_id=moveRegion", `{"region_id":"r2"}`)
	if st != http.StatusOK || out["region_id"] != "r2" {
		t.Fatalf("moveRegion: HTTP %d %v\ncentre logs:\n%s", st, out, centre.logs())
	}
}

// waitGone waits until g no longer holds the device (its data went
// with it).
func waitGone(t *testing.T, g *Gate, id string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _ := g.Do("GET", g.P("/devices/"+id), nil)
		if st == http.StatusNotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old region still holds the device: HTTP %d\n%s", st, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestActivationLwM2MMoveE2E: moveRegion of an online LwM2M device. Its
// old region de-registers it (the client has no Bootstrap-Request
// Trigger), so its next Update is refused with 4.04; it bootstraps
// again at the centre over DTLS, is written the new region's account,
// registers there and answers a command there; the old region no longer
// holds it.
func TestActivationLwM2MMoveE2E(t *testing.T) {
	r1, r2, centre, _, bootstrapDTLS := lwm2mRegions(t)
	id := coapDevice(t, r1, "nb", "lwmv-1", true)
	key, _ := hex.DecodeString(pskSecret)

	register := func(in *Gate) *lwm2mclient.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		b, err := lwm2mclient.BootstrapPSK(ctx, bootstrapDTLS, "lwmv-1", "lwmv-1", key)
		if err != nil {
			t.Fatalf("bootstrap: %v\ncentre:\n%s", err, centre.logs())
		}
		uri, _, identity, k := b.Account(1)
		if uri != "coaps://"+in.DTLS {
			t.Fatalf("written %q, want the region at %s", uri, in.DTLS)
		}
		cl, err := lwm2mclient.Dial(ctx, lwm2mclient.Config{Server: strings.TrimPrefix(uri, "coaps://"),
			Endpoint: "lwmv-1", PSKIdentity: identity, PSK: k, Lifetime: int(b.Values[format.NewPath(1, 0, 1)].Int())})
		if err != nil {
			t.Fatalf("dial region: %v", err)
		}
		t.Cleanup(func() { cl.Close() })
		if err := cl.Register(ctx); err != nil {
			t.Fatalf("register: %v", err)
		}
		in.waitStatus(id, "ONLINE")
		return cl
	}
	cl := register(r1)

	moveLwM2M(t, centre, r1.Token, id)
	// De-registered in r1: the device's next Update says so.
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err = cl.Update(context.Background()); err == nil && time.Now().Before(deadline); err = cl.Update(context.Background()) {
		time.Sleep(100 * time.Millisecond)
	}
	if ce, ok := err.(*lwm2mclient.CodeError); !ok || ce.Code.String() != "NotFound" {
		t.Fatalf("update in the old region after the move: %v, want 4.04\ncentre:\n%s\nr1:\n%s", err, centre.logs(), r1.Logs())
	}
	cl.Close()
	register(r2)
	waitGone(t, r1, id, centre.logs)
	cmd := asyncCommand(t, r2, id, map[string]any{"service_id": "LwM2M", "command_name": "READ",
		"paras": map[string]any{"path": "/3/0/0"}, "send_strategy": "immediately"})
	waitCommand(t, r2, id, cmd, "SUCCESSFUL")
}

// TestActivationLwM2MMoveWakaama: Wakaama's lwm2mclient_tinydtls,
// bootstrapped over DTLS at the centre and registered in r1, is moved
// to r2 with moveRegion while online. It has no Bootstrap-Request
// Trigger and does not act on the Registration Update Trigger, so r1
// de-registers it and its next Update (the centre writes a 20 s
// lifetime: one every 10 s) fails; it bootstraps again at the centre
// and registers in r2, where it answers a READ; r1 no longer holds it.
func TestActivationLwM2MMoveWakaama(t *testing.T) {
	bin := wakaamaBinary(t, "WAKAAMA_CLIENT_DTLS")
	r1, r2, centre, _, bootstrapDTLS := lwm2mRegions(t, "  bootstrap_lifetime: 20s\n")
	id := coapDevice(t, r1, "nb", "wakaama-mv", true)
	out := startWakaama(t, r1, bin, bootstrapDTLS, "-n", "wakaama-mv", "-b", "-i", "wakaama-mv", "-s", hex.EncodeToString([]byte(pskText)))
	waitOnline := func(g *Gate, where string) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for {
			if st, d := g.Do("GET", g.P("/devices/"+id), nil); st == http.StatusOK && d["status"] == "ONLINE" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Wakaama did not register in %s; its output:\n%s\ncentre:\n%s\nr1:\n%s\nr2:\n%s", where, out(), centre.logs(), r1.Logs(), r2.Logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitOnline(r1, "r1")
	moveLwM2M(t, centre, r1.Token, id)
	waitOnline(r2, "r2")
	waitGone(t, r1, id, func() string { return centre.logs() + "\nWakaama:\n" + out() })
	cmd := asyncCommand(t, r2, id, map[string]any{"service_id": "LwM2M", "command_name": "READ",
		"paras": map[string]any{"path": "/3/0/0"}, "send_strategy": "immediately"})
	if c := waitCommandOr(t, r2, id, cmd, "SUCCESSFUL", out); !hasValue(c["result"].(map[string]any), "/3/0/0", "Open Mobile Alliance") {
		t.Fatalf("READ /3/0/0 in r2: %v", c["result"])
	}
}
