package lwm2m

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
)

func TestRegistrationCodecRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 7, 8, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		reg  Registration
		obs  []savedObservation
	}{
		{"minimal", Registration{ID: "abc", Endpoint: "e", DeviceID: "d", Binding: "U", RootPath: "/", Lifetime: 86400 * time.Second,
			RegisteredAt: at, UpdatedAt: at}, nil},
		{"full", Registration{ID: "abcdefghijklmnop", Endpoint: "urn:imei:123456789012345", DeviceID: "prod_123456789012345",
			Version: "1.1", Binding: "UQ", QueueMode: true, SMS: "+8613800000000", Lifetime: 300 * time.Second, RootPath: "/lwm2m",
			Objects: []ObjectLink{{Path: format.NewPath(1, 0)}, {Path: format.NewPath(3), Version: "1.1"}, {Path: format.NewPath(19, 1)}},
			Formats: format.SetOf(format.FormatSenMLJSON, format.FormatTLV), Secure: true, Addr: "[::1]:56830",
			RegisteredAt: at, UpdatedAt: at.Add(time.Hour)},
			[]savedObservation{{token: "\x01\x02\x03\x04\x05\x06\x07\x08", path: format.NewPath(19, 0, 0)}, {token: "t2", path: format.NewPath(3, 0, 9)},
				{token: "root", path: format.NewPath()}}},
		{"composite", Registration{ID: "abc", Endpoint: "e", DeviceID: "d", Binding: "U", RootPath: "/", Lifetime: time.Hour,
			RegisteredAt: at, UpdatedAt: at},
			[]savedObservation{{token: "one", path: format.NewPath(3, 0, 9)},
				{token: "two", path: format.NewPath(), paths: []format.Path{format.NewPath(3, 0, 9), format.NewPath(1, 0)}},
				{token: "three", path: format.NewPath(), paths: []format.Path{format.NewPath(4)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeRegistration(nil, &tc.reg, tc.obs)
			// Version 2 only when there are composite observations, so
			// the others stay readable by a version-1 server.
			if want := map[bool]byte{false: 1, true: 2}[tc.name == "composite"]; b[0] != want {
				t.Fatalf("version %d, want %d", b[0], want)
			}
			got, obs, err := decodeRegistration(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.reg) {
				t.Fatalf("registration\n got %+v\nwant %+v", *got, tc.reg)
			}
			if !reflect.DeepEqual(obs, tc.obs) {
				t.Fatalf("observations %+v, want %+v", obs, tc.obs)
			}
			// Every truncation is refused, never a panic or a partial value.
			for n := range len(b) {
				if _, _, err := decodeRegistration(b[:n]); !errors.Is(err, errCorruptRegistration) {
					t.Fatalf("truncated to %d of %d bytes: err %v", n, len(b), err)
				}
			}
			if _, _, err := decodeRegistration(append(b, 0)); !errors.Is(err, errCorruptRegistration) {
				t.Fatalf("trailing byte: err %v", err)
			}
		})
	}
}

func TestRegistrationCodecRefusesBadValues(t *testing.T) {
	good := encodeRegistration(nil, &Registration{ID: "a", Objects: []ObjectLink{{Path: format.NewPath(3)}}}, nil)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{9}, good[1:]...)},
		{"huge object count", func() []byte {
			r := encodeRegistration(nil, &Registration{ID: "a"}, nil)
			r = r[:len(r)-2]                   // drop the object and observation counts
			return append(r, 0xff, 0xff, 0x03) // 65535 objects
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decodeRegistration(tc.b); !errors.Is(err, errCorruptRegistration) {
				t.Fatalf("err %v, want errCorruptRegistration", err)
			}
		})
	}
}

// BenchmarkEncodeRegistration is the cost a save round pays per device.
func BenchmarkEncodeRegistration(b *testing.B) {
	r := &Registration{ID: "abcdefghijklmnop", Endpoint: "urn:imei:123456789012345", DeviceID: "prod_123456789012345",
		Version: "1.1", Binding: "U", Lifetime: 86400 * time.Second, RootPath: "/", Addr: "127.0.0.1:40000",
		Objects: []ObjectLink{{Path: format.NewPath(1, 0)}, {Path: format.NewPath(3, 0)}, {Path: format.NewPath(19, 0)}, {Path: format.NewPath(19, 1)}}}
	obs := []savedObservation{{token: "12345678", path: format.NewPath(19, 0, 0)}}
	b.ReportAllocs()
	for b.Loop() {
		_ = encodeRegistration(make([]byte, 0, 128), r, obs)
	}
}
