package activation

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/iotgate/iotgate/registry/regions"
)

// fakeRegion answers by device name: "bad" → ErrBadSign, "none" →
// ErrUnknownDevice, "cert" → ErrAuthType, "off" → ErrOffline, "param" →
// a ParamError, anything else succeeds.
type fakeRegion struct {
	imported []regions.Transfer
	deleted  []string
	// redirects are the NotifyBootstraps' redirects (nil: none).
	redirects []*regions.Redirect
}

func (f *fakeRegion) err(dn string) error {
	switch dn {
	case "bad":
		return regions.ErrBadSign
	case "none":
		return regions.ErrUnknownDevice
	case "cert":
		return regions.ErrAuthType
	case "off":
		return regions.ErrOffline
	case "param":
		return &regions.ParamError{Param: "sign", Reason: "not hex"}
	case "broken":
		return errors.New("disk on fire")
	}
	return nil
}

func (f *fakeRegion) PreAuth(_ context.Context, p regions.PreAuth) (regions.Grant, error) {
	if err := f.err(p.DeviceName); err != nil {
		return regions.Grant{}, err
	}
	return regions.Grant{IotID: p.ProductKey + "_" + p.DeviceName, IotToken: "tok:" + p.ClientID + ":" + p.Timestamp}, nil
}

func (f *fakeRegion) Device(_ context.Context, pk, dn string) (regions.Held, error) {
	return regions.Held{ProjectID: "proj", DeviceID: pk + "_" + dn, Online: true}, f.err(dn)
}

func (f *fakeRegion) Export(_ context.Context, pk, dn string) (regions.Transfer, error) {
	return regions.Transfer{DeviceID: pk + "_" + dn, ProductKey: pk, DeviceName: dn, Secret: "s3cret"}, f.err(dn)
}

func (f *fakeRegion) Import(_ context.Context, t regions.Transfer) error {
	f.imported = append(f.imported, t)
	return f.err(t.DeviceName)
}

func (f *fakeRegion) Delete(_ context.Context, pk, dn string) error {
	f.deleted = append(f.deleted, pk+"/"+dn)
	return f.err(dn)
}

func (f *fakeRegion) NotifyBootstrap(_ context.Context, _, dn string, to *regions.Redirect) error {
	f.redirects = append(f.redirects, to)
	return f.err(dn)
}

func (f *fakeRegion) IssueToken(_ context.Context, pk, dn string) (regions.Grant, error) {
	return regions.Grant{IotID: pk + "_" + dn, IotToken: "tok:" + dn}, f.err(dn)
}

func (f *fakeRegion) CheckLogin(_ context.Context, l regions.Login) (regions.Held, error) {
	return regions.Held{DeviceID: l.DeviceID, ProductKey: "pk", DeviceName: l.Timestamp}, f.err(l.DeviceID)
}

func (f *fakeRegion) LwM2MDevice(_ context.Context, ep string) (regions.LwM2MAccount, error) {
	return regions.LwM2MAccount{Held: regions.Held{DeviceID: "id_" + ep, DeviceName: ep}, Secret: "00ff"}, f.err(ep)
}

func TestRegionEndpointRoundTrip(t *testing.T) {
	fake := &fakeRegion{}
	srv := httptest.NewServer(NewRegionHandler(fake, "region-token", nil))
	defer srv.Close()
	ctx := context.Background()
	c := NewRegionClient(srv.URL, "region-token", nil)

	g, err := c.PreAuth(ctx, regions.PreAuth{ProductKey: "pk", DeviceName: "d/1", ClientID: "pk.d", HasClientID: true, Timestamp: "1", HasTimestamp: true, Sign: "00"})
	if err != nil || g.IotID != "pk_d/1" || g.IotToken != "tok:pk.d:1" {
		t.Fatalf("preauth: %+v, %v", g, err)
	}
	if h, err := c.Device(ctx, "pk", "d/1"); err != nil || h.DeviceID != "pk_d/1" || !h.Online || h.ProjectID != "proj" {
		t.Fatalf("device: %+v, %v", h, err)
	}
	tr, err := c.Export(ctx, "pk", "d")
	if err != nil || tr.Secret != "s3cret" {
		t.Fatalf("export: %+v, %v", tr, err)
	}
	if err := c.Import(ctx, tr); err != nil || len(fake.imported) != 1 || fake.imported[0] != tr {
		t.Fatalf("import: %v, %+v", err, fake.imported)
	}
	if err := c.Delete(ctx, "pk", "d"); err != nil || fake.deleted[0] != "pk/d" {
		t.Fatalf("delete: %v %v", err, fake.deleted)
	}
	if err := c.NotifyBootstrap(ctx, "pk", "d", nil); err != nil {
		t.Fatal(err)
	}
	to := &regions.Redirect{IotID: "pk_d", IotToken: "tok", Host: "eu.example", Port: 8883}
	if err := c.NotifyBootstrap(ctx, "pk", "d", to); err != nil {
		t.Fatal(err)
	}
	if len(fake.redirects) != 2 || fake.redirects[0] != nil || fake.redirects[1] == nil || *fake.redirects[1] != *to {
		t.Fatalf("redirects: %v", fake.redirects)
	}
	if g, err := c.IssueToken(ctx, "pk", "d"); err != nil || g.IotID != "pk_d" || g.IotToken != "tok:d" {
		t.Fatalf("token: %+v, %v", g, err)
	}
	if _, err := c.IssueToken(ctx, "pk", "cert"); !errors.Is(err, regions.ErrAuthType) {
		t.Fatalf("token of a certificate device: %v", err)
	}
	if h, err := c.CheckLogin(ctx, regions.Login{DeviceID: "pk_d", Timestamp: "2026120708", Password: "p"}); err != nil || h.DeviceName != "2026120708" {
		t.Fatalf("login: %+v, %v", h, err)
	}
	if _, err := c.CheckLogin(ctx, regions.Login{DeviceID: "bad"}); !errors.Is(err, regions.ErrBadSign) {
		t.Fatalf("login with a wrong password: %v", err)
	}

	if a, err := c.LwM2MDevice(ctx, "urn:imei:1/2"); err != nil || a.DeviceName != "urn:imei:1/2" || a.Secret != "00ff" {
		t.Fatalf("lwm2m device: %+v, %v", a, err)
	}
	if _, err := c.LwM2MDevice(ctx, "none"); !errors.Is(err, regions.ErrUnknownDevice) {
		t.Fatalf("unknown lwm2m endpoint: %v", err)
	}
	if _, err := NewRegionClient(srv.URL, "", nil).LwM2MDevice(ctx, "d"); err == nil {
		t.Error("lwm2m device served without the token")
	}

	var pe *regions.ParamError
	for dn, want := range map[string]error{"bad": regions.ErrBadSign, "none": regions.ErrUnknownDevice,
		"cert": regions.ErrAuthType, "off": regions.ErrOffline} {
		if err := c.NotifyBootstrap(ctx, "pk", dn, nil); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", dn, err, want)
		}
	}
	if _, err := c.PreAuth(ctx, regions.PreAuth{DeviceName: "param"}); !errors.As(err, &pe) || pe.Param != "sign" {
		t.Errorf("param error: %v", err)
	}
	if err := c.Delete(ctx, "pk", "broken"); err == nil || errors.Is(err, regions.ErrUnknownDevice) {
		t.Errorf("server error: %v", err)
	}

	// Without the token nothing is served.
	for _, tok := range []string{"", "region-tokeN", "region-token-longer"} {
		if _, err := NewRegionClient(srv.URL, tok, nil).Export(ctx, "pk", "d"); err == nil {
			t.Errorf("token %q: export served", tok)
		}
	}
	resp, err := http.Get(srv.URL + "/activation/v1/devices/pk/d/export")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no Authorization: HTTP %d", resp.StatusCode)
	}
}
