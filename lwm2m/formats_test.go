package lwm2m_test

import (
	"context"
	"testing"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// TestLwM2MDeclaredFormatsFollowUpdates: the formats declared at Register
// are kept with the registration; an Update with links replaces them, an
// Update without keeps them; a malformed ct is 4.00.
func TestLwM2MDeclaredFormatsFollowUpdates(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("fmt1", false)
	c := f.client(lwm2mclient.Config{Endpoint: "fmt1", Lifetime: 300, Formats: []uint16{format.FormatSenMLJSON, format.FormatSenMLCBOR}})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	declared := func() format.Set {
		t.Helper()
		r, ok := f.srv.Registration(d.DeviceID)
		if !ok {
			t.Fatal("not registered")
		}
		return r.Formats
	}
	if got := declared(); got != format.SetOf(format.FormatSenMLJSON, format.FormatSenMLCBOR) {
		t.Fatalf("after Register: %q", got)
	}
	update := func(links string) codes.Code {
		t.Helper()
		resp, err := c.Do(ctx, codes.POST, c.Location(), nil, message.AppLinkFormat, []byte(links))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Code
	}
	if err := c.Update(ctx, "lt=600"); err != nil {
		t.Fatal(err)
	}
	if got := declared(); got != format.SetOf(format.FormatSenMLJSON, format.FormatSenMLCBOR) {
		t.Fatalf("after an Update without links: %q", got)
	}
	if code := update(`</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>`); code != codes.Changed {
		t.Fatalf("Update with links: %s", code)
	}
	if got := declared(); got != format.SetOf(format.FormatLwM2MJSON) {
		t.Fatalf("after an Update declaring 11543: %q", got)
	}
	if code := update(`</>;rt="oma.lwm2m";ct="110 x",</1/0>`); code != codes.BadRequest {
		t.Fatalf("Update with a malformed ct: %s, want 4.00", code)
	}
	if got := declared(); got != format.SetOf(format.FormatLwM2MJSON) {
		t.Fatalf("a refused Update changed the formats: %q", got)
	}
	if code := update(`</1/0>,</3/0>`); code != codes.Changed {
		t.Fatalf("Update with links: %s", code)
	}
	if got := declared(); got != 0 {
		t.Fatalf("after an Update declaring nothing: %q", got)
	}
}
