package activation

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Over DTLS a device proves itself with its bootstrap credential (PSK
// identity = endpoint name, key = its secret) and is written its PSK
// account; a wrong key or an unknown name fails the handshake, and a
// session may bootstrap only the device its identity names.
func TestBootstrapLwM2MDTLS(t *testing.T) {
	fc := &fakeLwM2MCentre{}
	b, err := NewBootstrapLwM2M(BootstrapLwM2MOptions{Centre: fc, DTLSListen: "127.0.0.1:0", Lifetime: time.Hour,
		HandshakeTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Start(context.Background())
	defer b.Shutdown(context.Background())
	if b.Addr() != nil {
		t.Fatal("a NoSec listener without Listen")
	}
	addr := b.DTLSAddr().String()

	tests := []struct {
		name, ep, identity string
		key                []byte
		query              []string
		format             uint16
		wantKey            []byte
		handshakeFails     bool
		refused            codes.Code
	}{
		{name: "psk", ep: "psk", identity: "psk", key: []byte{0x00, 0xff, 0x10}, format: format.FormatTLV, wantKey: []byte{0x00, 0xff, 0x10}},
		{name: "secure access", ep: "secure", identity: "secure", key: []byte{0x00, 0xff, 0x11}, format: format.FormatTLV, wantKey: []byte{0x00, 0xff, 0x11}},
		{name: "senml", ep: "psk", identity: "psk", key: []byte{0x00, 0xff, 0x10}, query: []string{"pct=110"}, format: format.FormatSenMLJSON, wantKey: []byte{0x00, 0xff, 0x10}},
		// The identity and the endpoint may be two names of one device.
		{name: "imei names", ep: "secure", identity: "urn:imei:1", key: []byte{0x00, 0xff, 0x11}, format: format.FormatTLV, wantKey: []byte{0x00, 0xff, 0x11}},
		{name: "another device's endpoint", ep: "secure", identity: "psk", key: []byte{0x00, 0xff, 0x10}, refused: codes.Forbidden},
		{name: "wrong key", ep: "psk", identity: "psk", key: []byte{0x00, 0xff, 0x11}, handshakeFails: true},
		{name: "unknown identity", ep: "nobody", identity: "nobody", key: []byte{0x00, 0xff, 0x10}, handshakeFails: true},
		// No secret, no credential.
		{name: "no secret", ep: "nosec", identity: "nosec", key: []byte{}, handshakeFails: true},
		{name: "region down", ep: "down", identity: "down", key: []byte{0x00}, handshakeFails: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wait := 10 * time.Second
			if tc.handshakeFails {
				// pion ends a failed handshake without an alert: the
				// client gives up.
				wait = 3 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			got, err := lwm2mclient.BootstrapPSK(ctx, addr, tc.ep, tc.identity, tc.key, tc.query...)
			var ce *lwm2mclient.CodeError
			switch {
			case tc.handshakeFails:
				if err == nil || errors.As(err, &ce) {
					t.Fatalf("want a failed handshake, got %v", err)
				}
				return
			case tc.refused != 0:
				if !errors.As(err, &ce) || ce.Code != tc.refused {
					t.Fatalf("want %v, got %v", tc.refused, err)
				}
				return
			case err != nil:
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
			if uri != "coaps://127.0.0.1:5684" || mode != securityModePSK || identity != tc.ep || string(key) != string(tc.wantKey) {
				t.Errorf("account %q mode %d identity %q key %x", uri, mode, identity, key)
			}
			if v := got.Values[format.NewPath(1, 0, 1)]; v.Int() != 3600 {
				t.Errorf("lifetime %v", v)
			}
		})
	}
}
