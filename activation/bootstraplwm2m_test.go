package activation

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry/regions"
)

// fakeLwM2MCentre knows endpoints "psk" (secret hex 00ff10), "nosec"
// (no secret), "secure-nosec" (no secret but secure access required),
// "down" (its region does not answer); others are unknown.
type fakeLwM2MCentre struct{ src netip.Addr }

func (f *fakeLwM2MCentre) LwM2MBootstrap(_ context.Context, src netip.Addr, ep string) (regions.LwM2MAccount, regions.Endpoint, error) {
	f.src = src
	rep := regions.Endpoint{LwM2MURI: "coap://127.0.0.1:5683", LwM2MSecureURI: "coaps://127.0.0.1:5684"}
	a := regions.LwM2MAccount{Held: regions.Held{DeviceID: "id-" + ep, DeviceName: ep}}
	switch ep {
	case "psk":
		a.Secret = "00ff10"
	case "nosec":
	case "secure-nosec":
		a.SecureAccess = true
	case "down":
		return a, rep, &regions.RegionError{Region: "eu", Err: errors.New("timeout")}
	default:
		return a, rep, regions.ErrUnknownDevice
	}
	return a, rep, nil
}

func TestBootstrapLwM2M(t *testing.T) {
	fc := &fakeLwM2MCentre{}
	b, err := NewBootstrapLwM2M(BootstrapLwM2MOptions{Centre: fc, Listen: "127.0.0.1:0", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Start(context.Background())
	defer b.Shutdown(context.Background())
	addr := b.Addr().String()

	tests := []struct {
		ep       string
		query    []string
		format   uint16
		uri      string
		mode     int64
		identity string
		key      []byte
		refused  bool
	}{
		{ep: "psk", format: format.FormatTLV, uri: "coaps://127.0.0.1:5684", mode: 0, identity: "psk", key: []byte{0x00, 0xff, 0x10}},
		{ep: "nosec", format: format.FormatTLV, uri: "coap://127.0.0.1:5683", mode: 3, key: []byte{}},
		// LwM2M 1.1 clients name their preferred format (Wakaama without
		// TLV sends pct=110); one we do not encode gets TLV.
		{ep: "psk", query: []string{"pct=110"}, format: format.FormatSenMLJSON, uri: "coaps://127.0.0.1:5684", mode: 0, identity: "psk", key: []byte{0x00, 0xff, 0x10}},
		{ep: "psk", query: []string{"pct=112"}, format: format.FormatSenMLCBOR, uri: "coaps://127.0.0.1:5684", mode: 0, identity: "psk", key: []byte{0x00, 0xff, 0x10}},
		{ep: "psk", query: []string{"pct=60"}, format: format.FormatTLV, uri: "coaps://127.0.0.1:5684", mode: 0, identity: "psk", key: []byte{0x00, 0xff, 0x10}},
		{ep: "secure-nosec", refused: true},
		{ep: "unknown", refused: true},
		{ep: "down", refused: true},
	}
	for _, tc := range tests {
		t.Run(tc.ep+strings.Join(tc.query, ","), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := lwm2mclient.Bootstrap(ctx, addr, tc.ep, tc.query...)
			if tc.refused {
				var ce *lwm2mclient.CodeError
				if !errors.As(err, &ce) {
					t.Fatalf("want a refusal, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantOps := []string{"DELETE /0", "DELETE /1", "PUT /0/1", "PUT /1/0", "POST /bs"}
			if !slices.Equal(got.Ops, wantOps) {
				t.Errorf("ops %v, want %v", got.Ops, wantOps)
			}
			if !slices.Equal(got.Formats, []uint16{tc.format, tc.format}) {
				t.Errorf("write formats %v, want %d", got.Formats, tc.format)
			}
			uri, mode, identity, key := got.Account(1)
			if uri != tc.uri || mode != tc.mode || identity != tc.identity || string(key) != string(tc.key) {
				t.Errorf("account %q mode %d identity %q key %x", uri, mode, identity, key)
			}
			v := got.Values
			if v[format.NewPath(0, 1, 1)].Bool() || v[format.NewPath(0, 1, 10)].Int() != ShortServerID {
				t.Errorf("security instance: bootstrap-server %v, short id %v", v[format.NewPath(0, 1, 1)], v[format.NewPath(0, 1, 10)])
			}
			if v[format.NewPath(1, 0, 0)].Int() != ShortServerID || v[format.NewPath(1, 0, 1)].Int() != 3600 ||
				v[format.NewPath(1, 0, 7)].Str() != "U" {
				t.Errorf("server instance: %v %v %v", v[format.NewPath(1, 0, 0)], v[format.NewPath(1, 0, 1)], v[format.NewPath(1, 0, 7)])
			}
			if fc.src != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("centre asked with source %v", fc.src)
			}
		})
	}
}
