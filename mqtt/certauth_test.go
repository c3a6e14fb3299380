package mqtt

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestMQTTCertificateAuthentication(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	trusted := newTestCA(t, "Trusted Device CA")
	caID := e.trust(trusted)
	stranger := newTestCA(t, "Unknown CA")
	unverified := newTestCA(t, "Unverified CA")
	if _, err := e.reg.AddCACert(ctx, e.project, unverified.pem()); err != nil {
		t.Fatal(err)
	}

	good := trusted.client(t, "cam_1")
	other := trusted.client(t, "someone else")
	second := trusted.client(t, "cam_1 spare")
	expired := trusted.issue(t, "cam_1", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	forged := stranger.client(t, "cam_1")
	notVerified := unverified.client(t, "cam_1")

	e.certDevice("cam_1", sha1Hex(good), sha256Hex(second)) // SHA-1 primary, SHA-256 secondary
	e.certDevice("cam_up", strings.ToUpper(sha256Hex(good)), "")
	e.secretDevice("meter_x", "secret-x509", "", false)

	ok := []struct {
		name string
		d    dial
	}{
		{"primary SHA-1 fingerprint", dial{id: "cam_1", tls: true, cert: &good}},
		{"secondary SHA-256 fingerprint", dial{id: "cam_1", tls: true, cert: &second}},
		{"fingerprint registered in uppercase", dial{id: "cam_up", tls: true, cert: &good}},
		{"a password is ignored", dial{id: "cam_1", tls: true, cert: &good, password: ptr("whatever")}},
		{"secret device may present a certificate", dial{id: "meter_x", secret: "secret-x509", tls: true, cert: &forged}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) { e.mustConnect(tt.d).Disconnect(0) })
	}

	refused := []struct {
		name string
		d    dial
		code byte
		log  string
	}{
		{"wrong fingerprint", dial{id: "cam_1", tls: true, cert: &other}, 0x04, "is not one of the device's"},
		{"wrong CA", dial{id: "cam_1", tls: true, cert: &forged}, 0x05, "not trusted"},
		{"CA uploaded but not verified", dial{id: "cam_1", tls: true, cert: &notVerified}, 0x05, "not trusted"},
		{"expired certificate", dial{id: "cam_1", tls: true, cert: &expired}, 0x05, "expired"},
		{"no certificate", dial{id: "cam_1", tls: true}, 0x04, "no client certificate"},
		{"certificate device over plain MQTT", dial{id: "cam_1"}, 0x04, "must use MQTTS"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			e.refused(tt.d, tt.code)
			if !strings.Contains(e.logs.String(), tt.log) {
				t.Fatalf("log lacks the reason %q", tt.log)
			}
		})
	}

	t.Run("deleting the CA applies to the next connection", func(t *testing.T) {
		if err := e.reg.DeleteCACert(ctx, e.project, caID); err != nil {
			t.Fatal(err)
		}
		e.refused(dial{id: "cam_1", tls: true, cert: &good}, 0x05)
		e.trust(trusted)
		e.mustConnect(dial{id: "cam_1", tls: true, cert: &good}).Disconnect(0)
	})
}

// A certificate device without a fingerprint records the first
// certificate it connects with, and is bound to it from then on.
func TestMQTTLearnedFingerprint(t *testing.T) {
	e := newEnv(t)
	ca := newTestCA(t, "Device CA")
	e.trust(ca)
	first := ca.client(t, "cam_new")
	later := ca.client(t, "cam_new again")
	e.certDevice("cam_new", "", "")

	e.mustConnect(dial{id: "cam_new", tls: true, cert: &first}).Disconnect(0)
	d, err := e.reg.Device(context.Background(), "cam_new")
	if err != nil {
		t.Fatal(err)
	}
	if d.Auth.Fingerprint != sha1Hex(first) {
		t.Fatalf("fingerprint %q, want the first certificate's %q", d.Auth.Fingerprint, sha1Hex(first))
	}
	e.refused(dial{id: "cam_new", tls: true, cert: &later}, 0x04)
	e.mustConnect(dial{id: "cam_new", tls: true, cert: &first}).Disconnect(0)

	// A certificate already bound to another device cannot be learned.
	e.certDevice("cam_other", "", "")
	e.refused(dial{id: "cam_other", tls: true, cert: &first}, 0x04)
}
