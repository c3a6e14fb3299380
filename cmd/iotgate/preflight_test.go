package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckListen(t *testing.T) {
	busyTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	free := func(network string) string {
		t.Helper()
		if network == "udp" {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return c.LocalAddr().String()
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	base := func() Config {
		c := defaultConfig()
		c.API.Listen, c.API.TLSListen = free("tcp"), ""
		c.MQTT.Listen, c.MQTT.TLSListen = free("tcp"), ""
		c.CoAP.Listen, c.CoAP.DTLSListen = free("udp"), ""
		return c
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" : no error
	}{
		{"all free", func(*Config) {}, ""},
		{"api busy", func(c *Config) { c.API.Listen = busyTCP.Addr().String() }, `api.listen "` + busyTCP.Addr().String() + `": cannot listen: address already in use`},
		{"coap busy", func(c *Config) { c.CoAP.Listen = busyUDP.LocalAddr().String() }, "coap.listen"},
		{"two keys, one address", func(c *Config) { c.Metrics.Listen = c.API.Listen }, "metrics.listen"},
		{"debug busy", func(c *Config) { c.DebugListen = busyTCP.Addr().String() }, "debug_listen"},
		{"not this machine's", func(c *Config) { c.MQTT.Listen = "192.0.2.1:1883" }, "no interface of this machine has that address"},
	} {
		c := base()
		tc.mod(&c)
		err := c.checkListen()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// writePair writes a self-signed certificate valid until notAfter and
// its key (or another key, when mismatched) and returns their paths.
func writePair(t *testing.T, notAfter time.Time, mismatched bool) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if mismatched {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	cert, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, keyFile
}

func TestCheckCertFiles(t *testing.T) {
	now := time.Now()
	goodCert, goodKey := writePair(t, now.Add(time.Hour), false)
	oldCert, oldKey := writePair(t, now.Add(-time.Hour), false)
	badCert, badKey := writePair(t, now.Add(time.Hour), true)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"generated (not checked: a start makes or renews it)", func(*Config) {}, ""},
		{"good MQTTS pair", func(c *Config) { c.MQTT.TLSCertFile, c.MQTT.TLSKeyFile = goodCert, goodKey }, ""},
		{"missing API file", func(c *Config) { c.API.TLSCertFile, c.API.TLSKeyFile = goodCert+".gone", goodKey }, "api.tls_cert_file"},
		{"expired", func(c *Config) { c.MQTT.TLSCertFile, c.MQTT.TLSKeyFile = oldCert, oldKey }, "expired"},
		{"key of another certificate", func(c *Config) { c.API.TLSCertFile, c.API.TLSKeyFile = badCert, badKey }, "api.tls_cert_file"},
		{"listener off: its files unused", func(c *Config) { c.API.TLSListen, c.API.TLSCertFile, c.API.TLSKeyFile = "", badCert, badKey }, ""},
	} {
		c := defaultConfig()
		tc.mod(&c)
		err := c.checkCertFiles()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
