package mqtt

import (
	"errors"
	"fmt"
	"strings"
)

// isAlibaba tells an Alibaba CONNECT from an IoTDA one by its shape: the
// Alibaba mqttClientId is clientId|k=v,...| and its username
// DeviceName&ProductKey. IoTDA ClientIds and usernames are device ids
// ([A-Za-z0-9_-]), which contain neither '|' nor '&'.
func isAlibaba(clientID string, username []byte) bool {
	return strings.IndexByte(clientID, '|') >= 0 || strings.IndexByte(string(username), '&') >= 0
}

// aliClientID is an Alibaba mqttClientId (reference §1.2, §4, §8.1).
type aliClientID struct {
	// ClientID is the device's free text before the first '|' (may be
	// empty; part of the device-secret sign, the ClientID of connwl).
	ClientID   string
	SecureMode string // "" if absent
	SignMethod string // "" if absent (hmacmd5)
	Timestamp  string
	// HasTimestamp: the timestamp parameter was sent (and is signed).
	HasTimestamp bool
	AuthType     string // register, regnwl, connwl or ""
	Random       string
}

// Limits on an Alibaba ClientId. Alibaba documents 64 characters for the
// clientId part, sized for its 11-character ProductKeys and DeviceNames
// of at most 32; ours are product ids of up to 36 and node ids of up to
// 64, and SDKs build the clientId as pk&dn or pk.dn, so it gets room for
// that (101) instead.
const (
	maxAliClientIDLen = 256 // the whole mqttClientId
	maxAliClientLen   = 128 // the clientId part
)

var errAliClientID = errors.New("want clientId|key=value,...|")

// parseAliClientID parses clientId|k=v,...|: split at the first and the
// last '|'; parameters in any order, separated by ',', empty items
// skipped (C SDK 4 leaves a trailing comma), unknown keys ignored (SDKs
// send _v, lan, gw, ext, _ss, sii, instanceId, ...), known keys matched
// in any case. A known key given twice, an item without '=', or text
// after the last '|' make the ClientId malformed.
func parseAliClientID(s string) (aliClientID, error) {
	if len(s) > maxAliClientIDLen {
		return aliClientID{}, fmt.Errorf("longer than %d characters", maxAliClientIDLen)
	}
	client, rest, ok := strings.Cut(s, "|")
	if !ok {
		return aliClientID{}, errAliClientID
	}
	params, tail, ok := cutLast(rest, '|')
	if !ok || tail != "" {
		return aliClientID{}, errAliClientID
	}
	if len(client) > maxAliClientLen {
		return aliClientID{}, fmt.Errorf("clientId longer than %d characters", maxAliClientLen)
	}
	c := aliClientID{ClientID: client}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(params, ",") {
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return aliClientID{}, fmt.Errorf("parameter %q is not key=value", item)
		}
		key := strings.ToLower(k)
		var dst *string
		switch key {
		case "securemode":
			dst = &c.SecureMode
		case "signmethod":
			dst = &c.SignMethod
		case "timestamp":
			dst, c.HasTimestamp = &c.Timestamp, true
		case "authtype":
			dst = &c.AuthType
		case "random":
			dst = &c.Random
		default:
			continue
		}
		if seen[key] {
			return aliClientID{}, fmt.Errorf("parameter %s given twice", k)
		}
		seen[key] = true
		*dst = v
	}
	return c, nil
}

// parseAliUsername splits DeviceName&ProductKey.
func parseAliUsername(u []byte) (dn, pk string, ok bool) {
	dn, pk, ok = strings.Cut(string(u), "&")
	return dn, pk, ok && dn != "" && pk != ""
}
