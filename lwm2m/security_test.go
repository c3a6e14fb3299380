package lwm2m

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

type nodeMap map[string]*registry.Device

func (m nodeMap) DeviceByNodeID(_ context.Context, node string) (*registry.Device, error) {
	if d, ok := m[node]; ok {
		return d, nil
	}
	return nil, &registry.NotFoundError{Kind: registry.EntityNode, ID: node}
}

func TestLwM2MDeviceByEndpoint(t *testing.T) {
	digits := &registry.Device{DeviceID: "p_861234567890123"}
	whole := &registry.Device{DeviceID: "p_whole"}
	plain := &registry.Device{DeviceID: "p_meter"}
	sec := RegistrySecurity{Registry: nodeMap{"861234567890123": digits, "urn:imei:999": whole, "meter": plain}}
	for ep, want := range map[string]*registry.Device{
		"meter":                     plain,
		"urn:imei:861234567890123":  digits, // HiSilicon node id, Qualcomm endpoint
		"URN:IMEI:861234567890123":  digits,
		"urn:imei:999":              whole, // the whole name wins
		"861234567890123":           digits,
		"urn:imei:86123456789012x":  nil,
		"urn:imei:":                 nil,
		"urn:imsi:861234567890123":  nil,
		"":                          nil,
		"urn:imei:8612345678901234": nil,
	} {
		got, err := sec.DeviceByEndpoint(context.Background(), ep)
		if want == nil {
			if !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("%q: %v, %v; want not found", ep, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %v, %v; want %s", ep, got, err, want.DeviceID)
		}
	}
}

func TestLwM2MPSK(t *testing.T) {
	for secret, want := range map[string][]byte{
		"dcf52970860ee4b30ebc2d56f7c4d7ea": {0xdc, 0xf5, 0x29, 0x70, 0x86, 0x0e, 0xe4, 0xb3, 0x0e, 0xbc, 0x2d, 0x56, 0xf7, 0xc4, 0xd7, 0xea},
		"DEADBEEF":                         {0xde, 0xad, 0xbe, 0xef},
		"abcdef123":                        []byte("abcdef123"), // odd length: text
		"not-hex-secret":                   []byte("not-hex-secret"),
	} {
		if got := PSK(secret); !bytes.Equal(got, want) {
			t.Errorf("PSK(%q) = %x, want %x", secret, got, want)
		}
	}
}

func TestLwM2MPSKLookupHidesUnknownIdentities(t *testing.T) {
	sec := RegistrySecurity{Registry: nodeMap{
		"n1":   {DeviceID: "p_n1", Auth: registry.AuthInfo{Type: registry.AuthSecret, Secret: "00112233"}},
		"cert": {DeviceID: "p_cert", Auth: registry.AuthInfo{Type: registry.AuthCertificates}},
	}}
	k, err := pskLookup(context.Background(), sec, []byte("n1"))
	if err != nil || !bytes.Equal(k, []byte{0, 0x11, 0x22, 0x33}) {
		t.Fatalf("known identity: %x %v", k, err)
	}
	for _, id := range []string{"ghost", "cert"} {
		k1, err1 := pskLookup(context.Background(), sec, []byte(id))
		k2, err2 := pskLookup(context.Background(), sec, []byte(id))
		if err1 != nil || err2 != nil || len(k1) != 16 || bytes.Equal(k1, k2) {
			t.Fatalf("%s: want a fresh random key, got %x %x %v %v", id, k1, k2, err1, err2)
		}
	}
}
