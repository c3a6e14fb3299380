package registry

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// recordDevices are devices that between them set every stored field and
// take each branch of the binary form.
func recordDevices() []Device {
	at := time.Date(2026, 12, 7, 8, 9, 10, 123456789, time.UTC)
	return []Device{
		{ProjectID: "p", DeviceID: "prod_n1", NodeID: "n1", ProductID: "prod", Auth: AuthInfo{Type: AuthSecret, Secret: "s3cr3t-0123456789"},
			CreateTime: at, Seq: "6b16e9a0811c5820867feea3"},
		{ProjectID: "p", DeviceID: "custom-id", NodeID: "n2", ProductID: "prod", GatewayID: "gw_1", DeviceName: "Meter 2",
			Description: "in the basement", ExtensionInfo: json.RawMessage(`{"a": [1, 2],  "b":"<x>"}`),
			Auth:   AuthInfo{Type: AuthSecret, Secret: "one", SecondarySecret: "two", SecureAccess: true, Timeout: 300, TimeoutSet: true},
			Frozen: true, CreateTime: at, ActiveTime: at.Add(time.Second), ExpireAt: at.Add(300 * time.Second), StatusTime: at.Add(2 * time.Second),
			Seq: "not-hex-seq", DynReg: "delivered",
			ClientIDs:    []ClientID{{ClientID: "c1", Token: "tok1", CreateTime: at}, {ClientID: "c2", Token: "tok2", CreateTime: at.Add(time.Hour)}},
			ClientIDKept: true, Tags: []Tag{{Key: "floor", Value: "2"}, {Key: "flag"}}},
		{ProjectID: "p", DeviceID: "prod_", NodeID: "", ProductID: "prod", Auth: AuthInfo{Type: AuthCertificates,
			Fingerprint: strings.Repeat("ab", 20), SecondaryFingerprint: strings.Repeat("cd", 32)}, Seq: "6B16E9A0811C5820867FEEA3"},
		{ProjectID: "p", DeviceID: "prodx_n", NodeID: "n", ProductID: "prod", Auth: AuthInfo{Type: AuthSecret}, Seq: "",
			ExpireAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), CreateTime: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
	}
}

// TestDeviceRecordForms: a device stored in the binary form reads back as
// it was stored in the JSON form of earlier versions, and both as the
// device written (its extension info compacted, as JSON stored it).
func TestDeviceRecordForms(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	for _, d := range recordDevices() {
		t.Run(d.DeviceID, func(t *testing.T) {
			bin, err := r.encodeDevice(&d)
			if err != nil {
				t.Fatal(err)
			}
			if bin[0] != deviceRecordV1 {
				t.Fatalf("record starts with %#x, want the binary form's version", bin[0])
			}
			old := deviceRecordJSON{Device: d}
			old.ClientIDs = append([]ClientID(nil), d.ClientIDs...)
			r.sealClientIDs(&old.Device)
			old.Secret = r.seal.seal(d.Auth.Secret, d.DeviceID+"/secret")
			old.Secondary = r.seal.seal(d.Auth.SecondarySecret, d.DeviceID+"/secondary")
			js, err := json.Marshal(&old)
			if err != nil {
				t.Fatal(err)
			}
			want := d
			if len(d.ExtensionInfo) > 0 {
				var buf bytes.Buffer
				if err := json.Compact(&buf, d.ExtensionInfo); err != nil {
					t.Fatal(err)
				}
				want.ExtensionInfo = buf.Bytes()
			}
			for _, form := range []struct {
				name string
				rec  []byte
			}{{"binary", bin}, {"json", js}} {
				got, err := r.decodeDevice(d.DeviceID, form.rec)
				if err != nil {
					t.Fatalf("%s: %v", form.name, err)
				}
				if !reflect.DeepEqual(got.ExtensionInfo, want.ExtensionInfo) && !jsonEqual(got.ExtensionInfo, want.ExtensionInfo) {
					t.Fatalf("%s: extension info %s, want %s", form.name, got.ExtensionInfo, want.ExtensionInfo)
				}
				got.ExtensionInfo = want.ExtensionInfo
				w := want
				for i := range got.ClientIDs {
					got.ClientIDs[i].Sealed = nil
				}
				w.ClientIDs = nil
				for _, c := range want.ClientIDs {
					w.ClientIDs = append(w.ClientIDs, ClientID{ClientID: c.ClientID, Token: c.Token, CreateTime: c.CreateTime})
				}
				if !reflect.DeepEqual(*got, w) {
					t.Fatalf("%s: read back\n%+v\nwant\n%+v", form.name, *got, w)
				}
			}
			blob := blobOf(&d)
			cached, err := blob.device(d.DeviceID)
			if err != nil {
				t.Fatalf("cache blob: %v", err)
			}
			w := d
			w.ExtensionInfo = append(json.RawMessage(nil), d.ExtensionInfo...)
			if len(w.ExtensionInfo) == 0 {
				w.ExtensionInfo = nil
			}
			w.ClientIDs = nil
			for _, c := range d.ClientIDs {
				w.ClientIDs = append(w.ClientIDs, ClientID{ClientID: c.ClientID, Token: c.Token, CreateTime: c.CreateTime})
			}
			if !reflect.DeepEqual(*cached, w) {
				t.Fatalf("cache blob: read back\n%+v\nwant\n%+v", *cached, w)
			}
			if len(bin) >= len(js)*2/3 {
				t.Fatalf("binary record %d bytes against the JSON form's %d", len(bin), len(js))
			}
		})
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func TestDeviceRecordRefusesDamage(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	d := recordDevices()[1]
	good, err := r.encodeDevice(&d)
	if err != nil {
		t.Fatal(err)
	}
	typical := recordDevices()[0]
	short, err := r.encodeDevice(&typical)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id string
		rec      []byte
		want     string
	}{
		{"cut short", d.DeviceID, good[:len(good)-3], "cut short"},
		{"trailing bytes", d.DeviceID, append(append([]byte(nil), good...), 0, 0), "2 bytes after the device record"},
		{"unknown version", d.DeviceID, append([]byte{9}, good[1:]...), "version 9 is unknown"},
		{"id not product_node", "other_n1", short, `is not of product "prod"`},
		{"wrong id", "prod_n2", short, "open sealed secret"},
		{"empty", d.DeviceID, nil, "cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.decodeDevice(tc.id, tc.rec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// FuzzDeviceRecord: no input makes the binary reader panic or allocate
// beyond its input, and what it accepts encodes back to a record that
// reads the same.
func FuzzDeviceRecord(f *testing.F) {
	for _, d := range recordDevices() {
		rec := d
		f.Add(d.DeviceID, appendDeviceRecord(nil, &rec, []byte("sealed"), nil, true))
	}
	f.Fuzz(func(t *testing.T, id string, b []byte) {
		d, secret, secondary, err := decodeDeviceRecord(id, b)
		ds, ssecret, ssecondary, serr := decodeDeviceRecord(id, string(b))
		if (err == nil) != (serr == nil) || err == nil && (!reflect.DeepEqual(d, ds) || string(secret) != ssecret || string(secondary) != ssecondary) {
			t.Fatalf("the string reader disagrees with the bytes reader: %v / %v\n%+v\n%+v", err, serr, d, ds)
		}
		if err != nil {
			return
		}
		again := appendDeviceRecord(nil, &d, secret, secondary, true)
		d2, secret2, secondary2, err := decodeDeviceRecord(id, again)
		if err != nil {
			t.Fatalf("re-encoded record does not read: %v", err)
		}
		if !reflect.DeepEqual(d, d2) || !bytes.Equal(secret, secret2) || !bytes.Equal(secondary, secondary2) {
			t.Fatalf("re-encoded record reads differently:\n%+v\n%+v", d, d2)
		}
	})
}

// BenchmarkDeviceBlob: what a cache hit costs to decode.
func BenchmarkDeviceBlob(b *testing.B) {
	d := recordDevices()[0]
	d.ActiveTime, d.StatusTime = d.CreateTime, d.CreateTime
	blob := blobOf(&d)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := blob.device(d.DeviceID); err != nil {
			b.Fatal(err)
		}
	}
}
