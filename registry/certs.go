package registry

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// MaxCACertsPerProject is IoTDA's limit of device CA certificates.
const MaxCACertsPerProject = 100

// CACert is a device CA certificate. Devices' X.509 client certificates
// must chain to a verified one of their project.
type CACert struct {
	ProjectID     string    `json:"project"`
	CertificateID string    `json:"id"`
	PEM           string    `json:"pem"`
	CNName        string    `json:"cn"`
	Owner         string    `json:"owner"`
	Verified      bool      `json:"verified"`
	VerifyCode    string    `json:"verify_code"`
	CreateTime    time.Time `json:"created"`
	NotBefore     time.Time `json:"not_before"`
	NotAfter      time.Time `json:"not_after"`
}

// Certificate parses the stored PEM.
func (c *CACert) Certificate() (*x509.Certificate, error) { return parseCertPEM("content", c.PEM) }

func parseCertPEM(field, s string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, invalid(field, "must be a PEM-encoded CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, invalid(field, "is not a valid X.509 certificate: %v", err)
	}
	return cert, nil
}

// AddCACert uploads a CA certificate. It stays unverified until
// VerifyCACert proves the uploader holds the CA's private key.
func (r *Registry) AddCACert(ctx context.Context, project, content string) (*CACert, error) {
	cert, err := parseCertPEM("content", content)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, invalid("content", "is not a CA certificate (basic constraints CA:TRUE required)")
	}
	now := r.now().UTC()
	c := &CACert{
		ProjectID:     project,
		CertificateID: randomHex(12),
		PEM:           strings.TrimSpace(content) + "\n",
		CNName:        cert.Subject.CommonName,
		Owner:         strings.Join(cert.Subject.Organization, ","),
		VerifyCode:    randomHex(16),
		CreateTime:    now,
		NotBefore:     cert.NotBefore.UTC(),
		NotAfter:      cert.NotAfter.UTC(),
	}
	err = r.write(ctx, func(w Writer) error {
		n := 0
		if err := w.Scan(certsPrefix(project), nil, false, func(_, v []byte) (bool, error) {
			var other CACert
			if err := json.Unmarshal(v, &other); err != nil {
				return false, err
			}
			if other.PEM == c.PEM {
				return false, &ConflictError{Field: UniqueCertificate, Value: other.CertificateID}
			}
			n++
			return true, nil
		}); err != nil {
			return err
		}
		if n >= MaxCACertsPerProject {
			return fmt.Errorf("at most %d device CA certificates per project: %w", MaxCACertsPerProject, ErrQuota)
		}
		return putCert(w, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func putCert(w Writer, c *CACert) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode certificate: %w", err)
	}
	return w.Set(certKey(c.ProjectID, c.CertificateID), b)
}

func getCert(rd Reader, project, id string) (*CACert, error) {
	b, err := rd.Get(certKey(project, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityCertificate, ID: id}
	}
	if err != nil {
		return nil, err
	}
	var c CACert
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode certificate %s: %w", id, err)
	}
	return &c, nil
}

// CACert returns one of the project's CA certificates.
func (r *Registry) CACert(ctx context.Context, project, id string) (*CACert, error) {
	var c *CACert
	err := r.view(ctx, func(rd Reader) error {
		var err error
		c, err = getCert(rd, project, id)
		return err
	})
	return c, err
}

// CACerts lists the project's CA certificates, oldest first.
func (r *Registry) CACerts(ctx context.Context, project string) ([]*CACert, error) {
	var out []*CACert
	err := r.view(ctx, func(rd Reader) error {
		return rd.Scan(certsPrefix(project), nil, false, func(_, v []byte) (bool, error) {
			var c CACert
			if err := json.Unmarshal(v, &c); err != nil {
				return false, err
			}
			out = append(out, &c)
			return true, nil
		})
	})
	return out, err
}

// ErrVerifyCode means the proof-of-possession certificate is wrong.
var ErrVerifyCode = errors.New("verification certificate does not prove possession of the CA key")

// VerifyCACert checks proof of possession: verifyPEM must be signed by the
// CA and carry the CA's verify code as its common name.
func (r *Registry) VerifyCACert(ctx context.Context, project, id, verifyPEM string) (*CACert, error) {
	proof, err := parseCertPEM("verify_content", verifyPEM)
	if err != nil {
		return nil, err
	}
	var out *CACert
	err = r.write(ctx, func(w Writer) error {
		c, err := getCert(w, project, id)
		if err != nil {
			return err
		}
		ca, err := c.Certificate()
		if err != nil {
			return err
		}
		if err := proof.CheckSignatureFrom(ca); err != nil {
			return fmt.Errorf("verification certificate is not signed by CA %s: %w", id, ErrVerifyCode)
		}
		if proof.Subject.CommonName != c.VerifyCode {
			return fmt.Errorf("verification certificate CN %q is not the verify code: %w", proof.Subject.CommonName, ErrVerifyCode)
		}
		c.Verified = true
		out = c
		return putCert(w, c)
	})
	return out, err
}

// DeleteCACert removes a CA certificate; new connections stop trusting it
// at once.
func (r *Registry) DeleteCACert(ctx context.Context, project, id string) error {
	return r.write(ctx, func(w Writer) error {
		if _, err := getCert(w, project, id); err != nil {
			return err
		}
		return w.Delete(certKey(project, id))
	})
}

// VerifiedCAPool returns the project's verified CA certificates as a pool
// for checking a device's client certificate chain.
func (r *Registry) VerifiedCAPool(ctx context.Context, project string) (*x509.CertPool, error) {
	certs, err := r.CACerts(ctx, project)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.Verified {
			continue
		}
		cert, err := c.Certificate()
		if err != nil {
			return nil, err
		}
		pool.AddCert(cert)
	}
	return pool, nil
}
