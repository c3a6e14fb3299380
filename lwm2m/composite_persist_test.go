package lwm2m_test

import (
	"context"
	"testing"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// TestCompositeObservationAndSendSurviveRestart: after a restart a
// composite observation still matches its notifications, and a NoSec
// client's Send is still known by its address.
func TestCompositeObservationAndSendSurviveRestart(t *testing.T) {
	p := newPersistFixture(t)
	d := p.device("composite-keep", false)
	a := p.start("", "127.0.0.1:0", "127.0.0.1:0", nil)
	udpAddr, dtlsAddr := a.UDPAddr().String(), a.DTLSAddr().String()
	ctx := context.Background()
	c := dial(t, lwm2mclient.Config{Server: udpAddr, Endpoint: "composite-keep", Lifetime: 300, Formats: []uint16{format.FormatSenMLJSON}})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	paths := []format.Path{format.NewPath(3, 0, 9), format.NewPath(1, 0, 1)}
	resp, err := a.Perform(ctx, d.DeviceID, lwm2m.Operation{Name: lwm2m.OpObserveComposite, Path: format.NewPath(), Paths: paths, Accept: -1})
	if err != nil || resp.Code != codes.Content {
		t.Fatalf("OBSERVE_COMPOSITE: %v %+v", err, resp)
	}
	eventually(t, "the composite observation stored", func() bool {
		return stored(t, p.reg(""), c.Location()).Data[0] == 2
	})
	p.stop(a)
	b := p.start("", udpAddr, dtlsAddr, nil)
	if b.Registered() != 1 {
		t.Fatalf("%d registrations restored, want 1", b.Registered())
	}
	if err := c.Set("/3/0/9", format.IntegerValue(7)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the composite notification stored", func() bool {
		msgs, err := p.reg("").Messages(ctx, "p", d.DeviceID, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(msgs) > 0 && msgs[0].Topic == "/3/0/9,/1/0/1"
	})
	if err := c.Send(ctx, format.FormatSenMLJSON, "/3/0/0"); err != nil {
		t.Fatalf("Send after the restart: %v", err)
	}
}
