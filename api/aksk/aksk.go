// Package aksk verifies HTTP requests signed with an access key / secret key
// pair the way the official Huawei Cloud SDKs (huaweicloud-sdk-go-v3 and
// siblings) sign them, so that unmodified SDK clients can call our IoTDA-style
// API.
//
// Two schemes are accepted:
//
//   - SDK-HMAC-SHA256: the SDK default for basic AK/SK credentials; the
//     secret key is the HMAC key.
//   - V11-HMAC-SHA256: "derived" signing, used by the SDK when a credential's
//     DerivedPredicate matches (the IoTDA client derives for service "iotdm").
//     The HMAC key is derived from the secret key with HKDF-SHA256 and scoped to
//     a date, region and service.
//
// Both share one canonical request:
//
//	METHOD \n URI \n QUERY \n HEADER-LINES \n SIGNED-HEADERS \n PAYLOAD-HASH
//
// where every HEADER-LINE ends in its own newline (so an empty line precedes
// SIGNED-HEADERS), URI is the percent-encoded path with a trailing slash, and
// QUERY is the decoded query sorted by key then value and re-encoded.
package aksk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Sentinel errors returned (wrapped, with detail) by [Verifier.Verify]. Test
// with errors.Is. Their text never contains secret material.
var (
	// ErrMissing means the request carries no Authorization header, or one
	// whose algorithm is not a supported AK/SK scheme (e.g. a bearer token), so
	// a caller may fall back to another authentication method.
	ErrMissing = errors.New("aksk: missing or unsupported Authorization")
	// ErrMalformed means the Authorization header, or another part of the
	// request the signature covers (query, X-Sdk-Content-Sha256), could not be
	// parsed or is internally inconsistent.
	ErrMalformed = errors.New("aksk: malformed signed request")
	// ErrUnknownKey means the access key is not known to [Verifier.Lookup].
	ErrUnknownKey = errors.New("aksk: unknown access key")
	// ErrClockSkew means X-Sdk-Date is missing, unparseable, or too far from
	// the server's clock; the window limits how long a captured request can
	// be replayed.
	ErrClockSkew = errors.New("aksk: missing, invalid or expired X-Sdk-Date")
	// ErrSignature means the signature does not match the request as received.
	ErrSignature = errors.New("aksk: signature mismatch")
)

// Algorithm names as they appear first in the Authorization header.
const (
	// AlgorithmSDK is the SDK's default AK/SK scheme.
	AlgorithmSDK = "SDK-HMAC-SHA256"
	// AlgorithmV11 is the SDK's derived-key scheme.
	AlgorithmV11 = "V11-HMAC-SHA256"
)

const (
	headerDate          = "X-Sdk-Date"
	headerContentSHA256 = "X-Sdk-Content-Sha256"
	unsignedPayload     = "UNSIGNED-PAYLOAD"
	dateLayout          = "20060102T150405Z"
	defaultMaxSkew      = 15 * time.Minute
)

// Verifier checks AK/SK signatures. Lookup returns the secret key for an
// access key. A Verifier is safe for concurrent use as long as Lookup and Now
// are.
type Verifier struct {
	// Lookup returns the secret key of accessKey; ok=false (or an empty
	// key, which anyone could sign with) rejects the request with
	// ErrUnknownKey. Verify does not modify or retain the returned slice.
	Lookup func(accessKey string) (secretKey []byte, ok bool)
	// MaxSkew is how far X-Sdk-Date may be from Now, in either direction.
	// 0 (or negative) means 15 minutes, the SDK/APIG default.
	MaxSkew time.Duration
	// Now returns the server time; nil means time.Now. Tests pin it.
	Now func() time.Time
}

// authorization holds the parsed Authorization header.
type authorization struct {
	algorithm     string
	accessKey     string
	scope         string // V11 only: "YYYYMMDD/region/service"
	signedHeaders string // as sent, e.g. "x-project-id;x-sdk-date"
	signature     [sha256.Size]byte
}

// Verify checks r, whose body has already been read into body, and returns
// the access key that signed it. It never reads r.Body. r must be the request
// as received (r.Host, r.URL.Path and r.URL.RawQuery untouched by routing
// prefixes), because those are what the client signed.
//
// When X-Sdk-Content-Sha256 is UNSIGNED-PAYLOAD, which the SDK sends for any
// Content-Type other than JSON or BSON, the body is not covered by the
// signature; everything else still is.
func (v *Verifier) Verify(r *http.Request, body []byte) (accessKey string, err error) {
	auth, err := parseAuthorization(r.Header)
	if err != nil {
		return "", err
	}

	date, err := v.checkDate(r.Header)
	if err != nil {
		return "", err
	}
	if auth.algorithm == AlgorithmV11 && !strings.HasPrefix(auth.scope, date[:8]+"/") {
		// The SDK builds the scope from the same instant as X-Sdk-Date; a
		// mismatch means the header was not produced by a signer.
		return "", fmt.Errorf("%w: Credential date does not match %s", ErrMalformed, headerDate)
	}

	var secret []byte
	ok := false
	if v.Lookup != nil {
		secret, ok = v.Lookup(auth.accessKey)
	}
	if !ok || len(secret) == 0 {
		return "", fmt.Errorf("%w: %s", ErrUnknownKey, quote(auth.accessKey))
	}

	canonical, err := canonicalRequest(r, body, auth.signedHeaders)
	if err != nil {
		return "", err
	}

	if !hmac.Equal(auth.signature[:], sign(&auth, secret, date, canonical)) {
		return "", fmt.Errorf("%w: access key %s", ErrSignature, quote(auth.accessKey))
	}
	return auth.accessKey, nil
}

// sign returns the expected HMAC for the request described by auth.
func sign(auth *authorization, secret []byte, date string, canonical []byte) []byte {
	crHash := sha256.Sum256(canonical)
	var crHex [2 * sha256.Size]byte
	hex.Encode(crHex[:], crHash[:])

	key := secret
	if auth.algorithm == AlgorithmV11 {
		// The SDK signs with the ASCII hex form of the derived key, not the
		// raw bytes.
		derived := deriveKey(secret, []byte(auth.accessKey), auth.scope)
		var derivedHex [2 * sha256.Size]byte
		hex.Encode(derivedHex[:], derived)
		key = derivedHex[:]
	}

	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(auth.algorithm))
	mac.Write([]byte{'\n'})
	mac.Write([]byte(date))
	mac.Write([]byte{'\n'})
	if auth.algorithm == AlgorithmV11 {
		mac.Write([]byte(auth.scope))
		mac.Write([]byte{'\n'})
	}
	mac.Write(crHex[:])
	return mac.Sum(nil)
}

// deriveKey is HKDF-SHA256 (RFC 5869) with IKM=secret, salt=accessKey and the
// credential scope as info, producing 32 bytes. With L equal to the hash size
// the expand step is a single block, T(1) = HMAC(PRK, info || 0x01).
func deriveKey(secret, accessKey []byte, info string) []byte {
	extract := hmac.New(sha256.New, accessKey)
	extract.Write(secret)
	prk := extract.Sum(nil)

	expand := hmac.New(sha256.New, prk)
	expand.Write([]byte(info))
	expand.Write([]byte{1})
	return expand.Sum(nil)
}

// checkDate returns X-Sdk-Date if it is well formed and within the allowed
// skew of the server clock.
func (v *Verifier) checkDate(h http.Header) (string, error) {
	values := h.Values(headerDate)
	if len(values) != 1 {
		return "", fmt.Errorf("%w: want exactly one %s header, got %d", ErrClockSkew, headerDate, len(values))
	}
	date := values[0]
	t, err := time.Parse(dateLayout, date)
	// Re-formatting rejects lenient variants: the raw value goes into the
	// string to sign, and the SDK always sends exactly this layout.
	if err != nil || t.Format(dateLayout) != date {
		return "", fmt.Errorf("%w: %s %s is not YYYYMMDDTHHMMSSZ", ErrClockSkew, headerDate, quote(date))
	}

	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	maxSkew := v.MaxSkew
	if maxSkew <= 0 {
		maxSkew = defaultMaxSkew
	}
	if d := now().Sub(t); d > maxSkew || d < -maxSkew {
		return "", fmt.Errorf("%w: %s %s is more than %v from server time", ErrClockSkew, headerDate, date, maxSkew)
	}
	return date, nil
}

// parseAuthorization parses
//
//	SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex
//	V11-HMAC-SHA256 Credential=AK/YYYYMMDD/region/service, SignedHeaders=a;b, Signature=hex
func parseAuthorization(h http.Header) (authorization, error) {
	var a authorization
	values := h.Values("Authorization")
	switch {
	case len(values) == 0 || values[0] == "":
		return a, fmt.Errorf("%w: no Authorization header", ErrMissing)
	case len(values) > 1:
		return a, fmt.Errorf("%w: more than one Authorization header", ErrMalformed)
	}

	alg, params, _ := strings.Cut(values[0], " ")
	if alg != AlgorithmSDK && alg != AlgorithmV11 {
		return a, fmt.Errorf("%w: algorithm %s", ErrMissing, quote(alg))
	}
	a.algorithm = alg

	keyField := "Access"
	if alg == AlgorithmV11 {
		keyField = "Credential"
	}
	var keyValue, signature string
	var seenKey, seenHeaders, seenSig bool
	for params != "" {
		var field string
		field, params, _ = strings.Cut(params, ",")
		name, value, found := strings.Cut(strings.TrimSpace(field), "=")
		if !found || value == "" {
			return a, fmt.Errorf("%w: field %s is not name=value", ErrMalformed, quote(field))
		}
		var seen *bool
		switch name {
		case keyField:
			keyValue, seen = value, &seenKey
		case "SignedHeaders":
			a.signedHeaders, seen = value, &seenHeaders
		case "Signature":
			signature, seen = value, &seenSig
		default:
			return a, fmt.Errorf("%w: unexpected field %s", ErrMalformed, quote(name))
		}
		if *seen {
			return a, fmt.Errorf("%w: duplicate field %s", ErrMalformed, name)
		}
		*seen = true
	}
	if !seenKey || !seenHeaders || !seenSig {
		return a, fmt.Errorf("%w: want %s, SignedHeaders and Signature", ErrMalformed, keyField)
	}

	if len(signature) != hex.EncodedLen(sha256.Size) {
		return a, fmt.Errorf("%w: Signature is not %d hex digits", ErrMalformed, hex.EncodedLen(sha256.Size))
	}
	if _, err := hex.Decode(a.signature[:], []byte(signature)); err != nil {
		return a, fmt.Errorf("%w: Signature is not hex", ErrMalformed)
	}

	for name := range strings.SplitSeq(a.signedHeaders, ";") {
		if name == "" {
			return a, fmt.Errorf("%w: empty name in SignedHeaders", ErrMalformed)
		}
	}

	if alg == AlgorithmSDK {
		a.accessKey = keyValue
		return a, nil
	}
	// Credential = AK "/" scope, scope = YYYYMMDD/region/service. Any region
	// and service are accepted (single-region platform); only the date is
	// checked, against X-Sdk-Date, by the caller.
	ak, scope, _ := strings.Cut(keyValue, "/")
	parts := strings.Split(scope, "/")
	if ak == "" || len(parts) != 3 || len(parts[0]) != 8 || parts[1] == "" || parts[2] == "" {
		return a, fmt.Errorf("%w: Credential is not AK/YYYYMMDD/region/service", ErrMalformed)
	}
	a.accessKey, a.scope = ak, scope
	return a, nil
}

// canonicalRequest builds the SDK's canonical request for r.
func canonicalRequest(r *http.Request, body []byte, signedHeaders string) ([]byte, error) {
	payload, err := payloadHash(r.Header, body)
	if err != nil {
		return nil, err
	}

	buf := make([]byte, 0, 256+len(r.URL.Path)+len(r.URL.RawQuery))
	buf = append(buf, r.Method...)
	buf = append(buf, '\n')
	buf = appendURI(buf, r.URL.Path)
	buf = append(buf, '\n')
	if buf, err = appendQuery(buf, r.URL.RawQuery); err != nil {
		return nil, err
	}
	buf = append(buf, '\n')
	if buf, err = appendHeaders(buf, r, signedHeaders); err != nil {
		return nil, err
	}
	buf = append(buf, '\n')
	buf = append(buf, signedHeaders...)
	buf = append(buf, '\n')
	buf = append(buf, payload...)
	return buf, nil
}

// payloadHash returns the last line of the canonical request. The SDK signs
// the literal value of X-Sdk-Content-Sha256 when present (it sends
// UNSIGNED-PAYLOAD for non-JSON bodies such as uploads), and otherwise the
// SHA-256 of the exact body bytes.
func payloadHash(h http.Header, body []byte) (string, error) {
	sum := sha256.Sum256(body)
	bodyHex := hex.EncodeToString(sum[:])

	values := h.Values(headerContentSHA256)
	switch {
	case len(values) == 0:
		return bodyHex, nil
	case len(values) > 1:
		return "", fmt.Errorf("%w: more than one %s header", ErrMalformed, headerContentSHA256)
	case values[0] == unsignedPayload:
		return unsignedPayload, nil
	case strings.EqualFold(values[0], bodyHex):
		return values[0], nil
	default:
		// A client-declared hash is only as good as its match with the
		// body; otherwise the body would go unauthenticated.
		return "", fmt.Errorf("%w: %s does not match the body", ErrSignature, headerContentSHA256)
	}
}

// appendURI appends the decoded path with each "/"-separated segment
// percent-encoded and a trailing "/" ensured. The SDK signs the unescaped path
// it later hands to net/http, which is what r.URL.Path decodes back to.
func appendURI(buf []byte, path string) []byte {
	first := true
	for seg := range strings.SplitSeq(path, "/") {
		if !first {
			buf = append(buf, '/')
		}
		first = false
		buf = appendEscaped(buf, seg)
	}
	if len(buf) == 0 || buf[len(buf)-1] != '/' {
		buf = append(buf, '/')
	}
	return buf
}

// appendQuery appends the query decoded, sorted by key then value (byte
// order, as the SDK sorts the unescaped strings) and re-encoded as k=v pairs
// joined by "&". A key without "=" has the empty value, which is how the SDK
// sends empty values.
func appendQuery(buf []byte, rawQuery string) ([]byte, error) {
	type pair struct{ k, v string }
	if rawQuery == "" {
		return buf, nil
	}
	pairs := make([]pair, 0, strings.Count(rawQuery, "&")+1)
	for rawQuery != "" {
		var seg string
		seg, rawQuery, _ = strings.Cut(rawQuery, "&")
		if seg == "" {
			continue
		}
		k, v, _ := strings.Cut(seg, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: query parameter %s is not valid percent-encoding", ErrMalformed, quote(seg))
		}
		pairs = append(pairs, pair{k, v})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	for i, p := range pairs {
		if i > 0 {
			buf = append(buf, '&')
		}
		buf = appendEscaped(buf, p.k)
		buf = append(buf, '=')
		buf = appendEscaped(buf, p.v)
	}
	return buf, nil
}

// appendHeaders appends "name:value\n" for each signed header, values
// trimmed and sorted. Host is not in r.Header on the server, so r.Host stands
// in for it.
func appendHeaders(buf []byte, r *http.Request, signedHeaders string) ([]byte, error) {
	for name := range strings.SplitSeq(signedHeaders, ";") {
		var values []string
		if strings.EqualFold(name, "host") {
			if r.Host != "" {
				values = []string{r.Host}
			}
		} else {
			values = r.Header.Values(name)
		}
		if len(values) == 0 {
			// Stripped in transit or never sent: either way the request
			// is not the one that was signed.
			return nil, fmt.Errorf("%w: signed header %s not present", ErrSignature, quote(name))
		}
		if len(values) > 1 {
			values = slices.Clone(values) // don't reorder r.Header
			slices.Sort(values)
		}
		for _, v := range values {
			buf = append(buf, name...)
			buf = append(buf, ':')
			buf = append(buf, strings.TrimSpace(v)...)
			buf = append(buf, '\n')
		}
	}
	return buf, nil
}

// appendEscaped percent-encodes every byte except the unreserved
// A-Z a-z 0-9 - _ . ~, with upper-case hex, as the SDK does for path
// segments, query keys and query values.
func appendEscaped(buf []byte, s string) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			buf = append(buf, c)
		} else {
			buf = append(buf, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return buf
}

// quote renders client-supplied text for an error message, truncated so a
// hostile header cannot flood logs.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
