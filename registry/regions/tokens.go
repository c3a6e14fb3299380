package regions

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// DefaultTokenTTL is how long an iotToken lets its device connect
// (Alibaba: 7 days).
const DefaultTokenTTL = 7 * 24 * time.Hour

// MaxIotIDLen bounds the iotId (the device id) a pre-auth may hand out:
// iotkit 3.0 copies it into a 64-byte buffer that must keep its NUL.
const MaxIotIDLen = 63

// Tokens issues and checks iotTokens. A token is self-contained:
// "{expiry, base 36 Unix seconds}.{base64url HMAC-SHA256(key, device id,
// expiry, device secret)}", at most 52 characters (iotkit keeps 64).
// Only the region holding key can mint or check one, no store holds
// them, and a device whose secret is reset or that is deleted loses its
// tokens with it.
type Tokens struct {
	key []byte
	ttl time.Duration
}

// NewTokens derives the token key from the region's master key (so
// every node of a region, sharing that key, checks the others' tokens).
// ttl 0 means DefaultTokenTTL.
func NewTokens(masterKey []byte, ttl time.Duration) *Tokens {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("iotgate activation iotToken v1"))
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	return &Tokens{key: m.Sum(nil), ttl: ttl}
}

// Issue returns a token for the device, valid until now + the TTL.
func (t *Tokens) Issue(d *registry.Device, now time.Time) string {
	exp := strconv.FormatInt(now.Add(t.ttl).Unix(), 36)
	return exp + "." + base64.RawURLEncoding.EncodeToString(t.mac(d, exp))
}

// Check reports ErrBadToken unless token is one Issue gave this device,
// under its current primary secret, and has not expired at now. The
// comparison takes constant time.
func (t *Tokens) Check(d *registry.Device, token string, now time.Time) error {
	exp, sig, ok := strings.Cut(token, ".")
	if !ok || len(exp) > 13 {
		return ErrBadToken
	}
	want := base64.RawURLEncoding.EncodeToString(t.mac(d, exp))
	if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) != 1 {
		return ErrBadToken
	}
	secs, err := strconv.ParseInt(exp, 36, 64)
	if err != nil || now.Unix() >= secs {
		return ErrBadToken
	}
	return nil
}

func (t *Tokens) mac(d *registry.Device, exp string) []byte {
	m := hmac.New(sha256.New, t.key)
	for _, s := range []string{d.DeviceID, exp, d.Auth.Secret} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}
