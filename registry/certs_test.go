package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T, cn string, isCA bool) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"Acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue signs a leaf with the given common name.
func (ca testCA) issue(t *testing.T, cn string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestCACertLifecycle(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	ca := newTestCA(t, "Acme Device CA", true)
	other := newTestCA(t, "Other CA", true)

	var ve *ValidationError
	if _, err := r.AddCACert(ctx, "proj", newTestCA(t, "leaf", false).pem); !errors.As(err, &ve) {
		t.Fatalf("non-CA accepted: %v", err)
	}
	c, err := r.AddCACert(ctx, "proj", ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	if c.CNName != "Acme Device CA" || c.Owner != "Acme" || c.Verified || len(c.VerifyCode) != 32 {
		t.Fatalf("upload: %+v", c)
	}
	if _, err := r.AddCACert(ctx, "proj", ca.pem); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("same CA twice: %v", err)
	}
	// Proofs that fail: signed by another CA, or the wrong CN.
	if _, err := r.VerifyCACert(ctx, "proj", c.CertificateID, other.issue(t, c.VerifyCode)); !errors.Is(err, ErrVerifyCode) {
		t.Fatalf("proof from another CA: %v", err)
	}
	if _, err := r.VerifyCACert(ctx, "proj", c.CertificateID, ca.issue(t, "not-the-code")); !errors.Is(err, ErrVerifyCode) {
		t.Fatalf("proof with wrong CN: %v", err)
	}
	if pool, _ := r.VerifiedCAPool(ctx, "proj"); len(pool.Subjects()) != 0 {
		t.Fatal("unverified CA is trusted")
	}
	if c, err = r.VerifyCACert(ctx, "proj", c.CertificateID, ca.issue(t, c.VerifyCode)); err != nil || !c.Verified {
		t.Fatalf("good proof: %v", err)
	}
	leaf, _ := parseCertPEM("x", ca.issue(t, "device-1"))
	pool, err := r.VerifiedCAPool(ctx, "proj")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("device cert does not chain to the verified CA: %v", err)
	}
	// Another project neither sees nor trusts it.
	if _, err := r.CACert(ctx, "proj2", c.CertificateID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other project sees the CA: %v", err)
	}
	if pool, _ := r.VerifiedCAPool(ctx, "proj2"); len(pool.Subjects()) != 0 {
		t.Fatal("other project trusts the CA")
	}
	if err := r.DeleteCACert(ctx, "proj", c.CertificateID); err != nil {
		t.Fatal(err)
	}
	if certs, _ := r.CACerts(ctx, "proj"); len(certs) != 0 {
		t.Fatalf("deleted CA still listed: %d", len(certs))
	}
}

func TestFingerprintResetAndLearn(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "x509dev", ProductID: "m1", Auth: AuthInfo{Type: AuthCertificates}})
	if err != nil {
		t.Fatal(err)
	}
	fp1 := "0123456789abcdef0123456789abcdef01234567"
	if err := r.LearnFingerprint(ctx, d.DeviceID, fp1); err != nil {
		t.Fatal(err)
	}
	if err := r.LearnFingerprint(ctx, d.DeviceID, "ffffffffffffffffffffffffffffffffffffffff"); err == nil {
		t.Fatal("a second, different fingerprint was learned")
	}
	if got, err := r.DeviceByFingerprint(ctx, fp1); err != nil || got.DeviceID != d.DeviceID {
		t.Fatalf("learned fingerprint not indexed: %v", err)
	}
	fp2 := "AAAA456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if _, err := r.ResetFingerprint(ctx, "proj", d.DeviceID, Primary, fp2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.DeviceByFingerprint(ctx, fp1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old fingerprint still indexed: %v", err)
	}
	if got, err := r.DeviceByFingerprint(ctx, fp2); err != nil || got.Auth.Fingerprint != "aaaa456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Fatalf("new fingerprint: %v %+v", err, got)
	}
	if _, err := r.ResetSecret(ctx, "proj", d.DeviceID, Primary, "", false); err == nil {
		t.Fatal("secret reset on a certificate device")
	}
}
