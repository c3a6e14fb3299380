package servercert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Generated names the files of a generated server certificate.
type Generated struct {
	// CAFile is the self-signed CA that signed the server certificate:
	// give it to clients (mosquitto --cafile, NODE_EXTRA_CA_CERTS).
	CAFile   string
	CertFile string
	KeyFile  string
	// Created is true when the files were made by this call.
	Created bool
}

// Validity of generated certificates; the server certificate is renewed,
// under the same CA, when less than renewBefore of it remains.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 2 * 365 * 24 * time.Hour
	renewBefore    = 30 * 24 * time.Hour
)

// LoadOrCreate makes sure dir holds a self-signed CA (ca.pem,
// ca-key.pem) and a server certificate it signed (server.pem,
// server-key.pem) for localhost, 127.0.0.1 and ::1, for deployments that
// configure no certificate of their own. Files from an earlier start are
// reused, so clients keep trusting the CA across restarts; calling it
// again on a running server renews a server certificate near its end.
func LoadOrCreate(dir string, now time.Time) (Generated, error) {
	g := Generated{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server-key.pem"),
	}
	caKeyFile := filepath.Join(dir, "ca-key.pem")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return g, fmt.Errorf("servercert: certificate directory: %w", err)
	}
	ca, caKey, err := loadPair(g.CAFile, caKeyFile)
	if errors.Is(err, os.ErrNotExist) {
		ca, caKey, err = newCA(now)
		if err == nil {
			err = writePair(g.CAFile, caKeyFile, ca.Raw, caKey)
		}
		g.Created = true
	}
	if err != nil {
		return g, fmt.Errorf("servercert: CA certificate: %w", err)
	}
	srv, _, err := loadPair(g.CertFile, g.KeyFile)
	if err == nil && srv.CheckSignatureFrom(ca) == nil && now.Add(renewBefore).Before(srv.NotAfter) {
		return g, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return g, fmt.Errorf("servercert: server certificate: %w", err)
	}
	der, key, err := newServerCert(ca, caKey, now)
	if err == nil {
		err = writePair(g.CertFile, g.KeyFile, der, key)
	}
	if err != nil {
		return g, fmt.Errorf("servercert: server certificate: %w", err)
	}
	g.Created = true
	return g, nil
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "iotgate local CA", Organization: []string{"iotgate"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newServerCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"iotgate"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	return der, key, err
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// loadPair reads a certificate and its ECDSA key; an error wrapping
// os.ErrNotExist if either file is missing.
func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not an ECDSA key", keyFile)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	return cert, key, err
}

// writePair writes a certificate (readable by all: clients need the CA)
// and its key (owner only), each through a temporary file and rename, so
// an interrupted start never leaves a half-written file.
func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFile(name string, b []byte, perm os.FileMode) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
