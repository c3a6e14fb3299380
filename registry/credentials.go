package registry

import (
	"crypto/hmac"
	"crypto/subtle"
	"hash"
)

// Devices that authenticate with a secret never send it: they send an HMAC
// computed from it. The wire formats differ by protocol and vendor (which
// fields are signed, hex or base64, where the proof travels), but checking
// such a proof against a device's credentials is the same everywhere, and
// lives here so every front end applies the same rules: the primary and
// the secondary secret are both accepted, and the comparison takes
// constant time.

// HMACProof says how a device derives its proof from a secret.
type HMACProof struct {
	// Hash is the HMAC's hash function, e.g. sha256.New.
	Hash func() hash.Hash
	// Data is the HMAC operand that is not the secret: the message when
	// SecretIsKey, else the key.
	Data []byte
	// SecretIsKey: HMAC(key = secret, message = Data), as in Alibaba's
	// MQTT sign. Otherwise HMAC(key = Data, message = secret), as in
	// IoTDA's MQTT password (the key is the ClientId timestamp).
	SecretIsKey bool
}

func (p HMACProof) sum(secret string) []byte {
	key, msg := p.Data, []byte(secret)
	if p.SecretIsKey {
		key, msg = msg, p.Data
	}
	m := hmac.New(p.Hash, key)
	m.Write(msg)
	return m.Sum(nil)
}

// MatchSecret reports whether mac is the HMAC p describes over one of the
// device's secrets, and which one. Both secrets are always computed and
// compared in constant time, so the answer's timing reveals neither
// which secret matched nor how much of mac was right. A device without
// secrets (CERTIFICATES) matches nothing.
func (d *Device) MatchSecret(p HMACProof, mac []byte) (SecretSlot, bool) {
	primary, secondary := 0, 0
	if d.Auth.Secret != "" {
		primary = subtle.ConstantTimeCompare(p.sum(d.Auth.Secret), mac)
	}
	if d.Auth.SecondarySecret != "" {
		secondary = subtle.ConstantTimeCompare(p.sum(d.Auth.SecondarySecret), mac)
	}
	switch {
	case primary == 1:
		return Primary, true
	case secondary == 1:
		return Secondary, true
	}
	return "", false
}
