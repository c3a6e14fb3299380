package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// clientID is an IoTDA MQTT ClientId,
// {device_id}_{identity_type}_{sign_type}_{timestamp} (reference §4.1).
type clientID struct {
	DeviceID string
	// TimeChecked is sign_type 1: the timestamp must be near our clock.
	// With sign_type 0 it is only the HMAC key.
	TimeChecked bool
	// Timestamp is YYYYMMDDHH as the device sent it: the HMAC key, used
	// verbatim (the Huawei C SDK sends non-dates such as 2024010124).
	Timestamp string
}

// maxClientIDLen is IoTDA's limit on the ClientId.
const maxClientIDLen = 256

var errClientIDFormat = errors.New("want {device_id}_0_{sign_type}_{YYYYMMDDHH}")

// parseClientID parses an IoTDA ClientId. The device id may itself
// contain '_', so the fixed fields are taken from the right.
func parseClientID(s string) (clientID, error) {
	if len(s) > maxClientIDLen {
		return clientID{}, fmt.Errorf("longer than %d characters", maxClientIDLen)
	}
	rest, ts, ok1 := cutLast(s, '_')
	rest, sign, ok2 := cutLast(rest, '_')
	dev, identity, ok3 := cutLast(rest, '_')
	if !ok1 || !ok2 || !ok3 || dev == "" {
		return clientID{}, errClientIDFormat
	}
	if identity != "0" {
		return clientID{}, fmt.Errorf("identity type %q is not supported (0: device id)", identity)
	}
	if sign != "0" && sign != "1" {
		return clientID{}, fmt.Errorf("sign type %q is not supported (0 or 1)", sign)
	}
	if len(ts) != 10 || strings.Trim(ts, "0123456789") != "" {
		return clientID{}, fmt.Errorf("timestamp %q is not 10 digits (YYYYMMDDHH)", ts)
	}
	return clientID{DeviceID: dev, TimeChecked: sign == "1", Timestamp: ts}, nil
}

func cutLast(s string, sep byte) (before, after string, found bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// errStaleTimestamp: a sign_type 1 timestamp too far from our clock.
var errStaleTimestamp = errors.New("timestamp is too far from the platform's time")

// checkTimestamp validates a sign_type 1 timestamp against now. The
// timestamp names an hour (UTC) and the device may have computed it at any
// moment of that hour, so now must lie within that hour widened by skew
// on both sides. A timestamp that is not a date is a format error; one out
// of range is errStaleTimestamp.
func checkTimestamp(ts string, now time.Time, skew time.Duration) error {
	t, err := time.Parse("2006010215", ts)
	if err != nil {
		return fmt.Errorf("timestamp %q is not a UTC hour YYYYMMDDHH", ts)
	}
	if now.Before(t.Add(-skew)) || !now.Before(t.Add(time.Hour+skew)) {
		return errStaleTimestamp
	}
	return nil
}
