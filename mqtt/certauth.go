package mqtt

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"

	"github.com/iotgate/iotgate/registry"
)

// checkCertificate authenticates a CERTIFICATES device (reference §4.2):
// over MQTTS, its leaf certificate must chain to a verified device CA of
// its project, read at every connection so that uploads and deletions
// apply at once, and its SHA-1 or SHA-256 fingerprint must be the
// device's primary or secondary one. A device without fingerprints
// records the first certificate's SHA-1 fingerprint (IoTDA's default).
//
// An untrusted certificate (unknown CA, expired, not for client
// authentication) is refused as not authorized; a missing certificate or
// one that is not this device's as bad credentials.
func (h *authHook) checkCertificate(ctx context.Context, d *registry.Device, conn *tls.ConnectionState) *refusal {
	if conn == nil {
		return refuse(badCredentials, "certificate device on plain MQTT; it must use MQTTS")
	}
	if len(conn.PeerCertificates) == 0 {
		return refuse(badCredentials, "no client certificate presented")
	}
	roots, err := h.reg.VerifiedCAPool(ctx, d.ProjectID)
	if err != nil {
		return refuse(serverUnavailable, "device CA certificates: %v", err)
	}
	leaf := conn.PeerCertificates[0]
	intermediates := x509.NewCertPool()
	for _, c := range conn.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	h.stats.credentialChecks.Add(1)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   h.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return reject(notAuthorized, failedBadCertificate, "client certificate not trusted: %v", err)
	}

	s1 := sha1.Sum(leaf.Raw)
	s256 := sha256.Sum256(leaf.Raw)
	fp1, fp256 := hex.EncodeToString(s1[:]), hex.EncodeToString(s256[:])
	a := d.Auth
	if a.Fingerprint == "" && a.SecondaryFingerprint == "" {
		err := h.reg.LearnFingerprint(ctx, d.DeviceID, fp1)
		var verr *registry.ValidationError
		switch {
		case errors.Is(err, registry.ErrAlreadyExists) || errors.As(err, &verr):
			return refuse(badCredentials, "certificate %s cannot be recorded for this device: %v", fp1, err)
		case err != nil:
			return refuse(serverUnavailable, "record certificate fingerprint: %v", err)
		}
		h.log.Info("recorded the device's certificate fingerprint", "device", d.DeviceID, "fingerprint", fp1)
		return nil
	}
	for _, fp := range [...]string{a.Fingerprint, a.SecondaryFingerprint} {
		if fp != "" && (fp == fp1 || fp == fp256) {
			return nil
		}
	}
	return reject(badCredentials, failedBadCertificate, "certificate fingerprint %s is not one of the device's", fp1)
}
