package lwm2m_test

import (
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// A client with the Bootstrap-Request Trigger (/1/0/9) is told to
// bootstrap through it and keeps its registration until it does; one
// without it is de-registered, so its next Update is refused (4.04) and
// it bootstraps again; a device not registered here is not connected.
func TestLwM2MNotifyBootstrap(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()

	for _, tc := range []struct {
		name, node   string
		trigger      bool
		secure       bool
		deregistered bool
	}{
		{name: "bootstrap-request trigger", node: "rebs-1", trigger: true, secure: true},
		{name: "no trigger, dtls", node: "rebs-2", secure: true, deregistered: true},
		{name: "no trigger, nosec", node: "rebs-3", deregistered: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := f.device(tc.node, false)
			cfg := lwm2mclient.Config{Endpoint: d.NodeID}
			if tc.secure {
				cfg.PSKIdentity, cfg.PSK = d.NodeID, lwm2m.PSK(secret)
			}
			cl := f.client(cfg)
			if tc.trigger {
				if err := cl.Set("/1/0/9", format.StringValue("")); err != nil {
					t.Fatal(err)
				}
			}
			if err := cl.Register(ctx); err != nil {
				t.Fatal(err)
			}
			if err := f.srv.NotifyBootstrap(ctx, d); err != nil {
				t.Fatalf("notify: %v", err)
			}
			_, registered := f.srv.Registration(d.DeviceID)
			if registered == tc.deregistered {
				t.Fatalf("registered %v after the notify, want %v", registered, !tc.deregistered)
			}
			err := cl.Update(ctx)
			switch {
			case tc.deregistered && codeOf(err) != codes.NotFound:
				t.Fatalf("update after de-registration: %v, want 4.04", err)
			case !tc.deregistered && err != nil:
				t.Fatalf("update: %v", err)
			}
			if tc.deregistered {
				if st := f.status(d.DeviceID); st == registry.StatusOnline {
					t.Fatal("a de-registered device is still online")
				}
			}
		})
	}
	d := f.device("rebs-never", false)
	if err := f.srv.NotifyBootstrap(ctx, d); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("unregistered device: %v", err)
	}
}
