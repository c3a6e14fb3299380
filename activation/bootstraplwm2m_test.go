package activation

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/registry/regions"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// fakeLwM2MCentre knows endpoints "psk" (secret hex 00ff10), "secure"
// (secret hex 00ff11, secure access required), "urn:imei:1" (the
// device "secure" under another name), "nosec" (no secret),
// "secure-nosec" (no secret but secure access required), "down" (its
// region does not answer); others are unknown.
type fakeLwM2MCentre struct {
	mu  sync.Mutex
	src netip.Addr // of the last request
}

func (f *fakeLwM2MCentre) source() netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.src
}

func (f *fakeLwM2MCentre) LwM2MBootstrap(_ context.Context, src netip.Addr, ep string) (regions.LwM2MAccount, regions.Endpoint, error) {
	f.mu.Lock()
	f.src = src
	f.mu.Unlock()
	rep := regions.Endpoint{LwM2MURI: "coap://127.0.0.1:5683", LwM2MSecureURI: "coaps://127.0.0.1:5684"}
	a := regions.LwM2MAccount{Held: regions.Held{DeviceID: "id-" + ep, DeviceName: ep}}
	switch ep {
	case "psk":
		a.Secret = "00ff10"
	case "secure", "urn:imei:1":
		a.Secret, a.SecureAccess, a.DeviceID = "00ff11", true, "id-secure"
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

func (f *fakeLwM2MCentre) LwM2MCredential(ctx context.Context, identity string) (regions.LwM2MAccount, error) {
	a, _, err := f.LwM2MBootstrap(ctx, netip.Addr{}, identity)
	return a, err
}

// Over NoSec, a device is written a NoSec account or refused: its PSK
// goes over DTLS only (TestBootstrapLwM2MDTLS).
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
		// A device with a secret that may register over NoSec is
		// written a NoSec account, without its key.
		{ep: "psk", format: format.FormatTLV, uri: "coap://127.0.0.1:5683", mode: 3, key: []byte{}},
		{ep: "nosec", format: format.FormatTLV, uri: "coap://127.0.0.1:5683", mode: 3, key: []byte{}},
		// LwM2M 1.1 clients name their preferred format (Wakaama without
		// TLV sends pct=110); one we do not encode gets TLV.
		{ep: "nosec", query: []string{"pct=110"}, format: format.FormatSenMLJSON, uri: "coap://127.0.0.1:5683", mode: 3, key: []byte{}},
		{ep: "nosec", query: []string{"pct=112"}, format: format.FormatSenMLCBOR, uri: "coap://127.0.0.1:5683", mode: 3, key: []byte{}},
		{ep: "nosec", query: []string{"pct=60"}, format: format.FormatTLV, uri: "coap://127.0.0.1:5683", mode: 3, key: []byte{}},
		// Its PSK would cross the network in clear.
		{ep: "secure", refused: true},
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
			if src := fc.source(); src != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("centre asked with source %v", src)
			}
		})
	}
}

// Unknown endpoints count against the name and the address; a banned
// address is refused before the centre is asked.
func TestBootstrapLwM2MGuard(t *testing.T) {
	fc := &fakeLwM2MCentre{}
	g := guard.NewLocal(guard.Config{IdentityFailures: guard.Window{Max: 10, Window: time.Minute, Ban: time.Minute},
		AddressFailures: guard.Window{Max: 2, Window: time.Minute, Ban: time.Minute}, MaxTracked: 100, MaxBans: 100})
	b, err := NewBootstrapLwM2M(BootstrapLwM2MOptions{Centre: fc, Listen: "127.0.0.1:0", Guard: g})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Start(context.Background())
	defer b.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ep := range []string{"nobody-1", "nobody-2"} {
		var ce *lwm2mclient.CodeError
		if _, err := lwm2mclient.Bootstrap(ctx, b.Addr().String(), ep); !errors.As(err, &ce) || ce.Code != codes.Forbidden {
			t.Fatalf("%s: %v, want 4.03", ep, err)
		}
	}
	fc.mu.Lock()
	fc.src = netip.Addr{}
	fc.mu.Unlock()
	var ce *lwm2mclient.CodeError
	if _, err := lwm2mclient.Bootstrap(ctx, b.Addr().String(), "psk"); !errors.As(err, &ce) || ce.Code != codes.Forbidden {
		t.Fatalf("banned address: %v, want 4.03", err)
	}
	if fc.source().IsValid() {
		t.Fatal("a banned address reached the centre")
	}
}
