package mqtt

import "strings"

// IoTDA topics (reference §4.3). Every topic of a device lives under
// $oc/devices/{device_id}/; what follows names the exchange. A device may
// publish only its uplink topics and subscribe only to filters that can
// match its downlink topics; nothing else is ever allowed. The functions
// here do not allocate: they run for every PUBLISH and SUBSCRIBE.

const devicesPrefix = "$oc/devices/"

// ownSuffix returns what follows "$oc/devices/{deviceID}/" in topic (a
// topic name or filter), and whether topic is under that prefix. The
// device part must be literal: "$oc/devices/+/..." belongs to nobody.
func ownSuffix(deviceID, topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, devicesPrefix)
	if !ok || deviceID == "" {
		return "", false
	}
	rest, ok = strings.CutPrefix(rest, deviceID)
	if !ok {
		return "", false
	}
	return strings.CutPrefix(rest, "/")
}

// uplink is the kind of a device-to-platform topic.
type uplink uint8

const (
	notUplink                   uplink = iota
	uplinkMessage                      // sys/messages/up
	uplinkProperties                   // sys/properties/report
	uplinkCommandResponse              // sys/commands/response/request_id={id}
	uplinkEvent                        // sys/events/up
	uplinkPropertiesSetResponse        // sys/properties/set/response/request_id={id}
	uplinkPropertiesGetResponse        // sys/properties/get/response/request_id={id}
	uplinkShadowGet                    // sys/shadow/get/request_id={id}
	uplinkUser                         // user/{suffix}: a custom topic
)

func (u uplink) String() string {
	return [...]string{"none", "message", "properties report", "command response", "event",
		"properties set response", "properties get response", "shadow get", "custom message"}[u]
}

// parseUplink classifies the part of a topic after the device prefix. For
// request/response topics it also returns the request id.
func parseUplink(suffix string) (uplink, string) {
	switch suffix {
	case "sys/messages/up":
		return uplinkMessage, ""
	case "sys/properties/report":
		return uplinkProperties, ""
	case "sys/events/up":
		return uplinkEvent, ""
	}
	for _, r := range [...]struct {
		prefix string
		kind   uplink
	}{
		{"sys/commands/response/", uplinkCommandResponse},
		{"sys/properties/set/response/", uplinkPropertiesSetResponse},
		{"sys/properties/get/response/", uplinkPropertiesGetResponse},
		{"sys/shadow/get/", uplinkShadowGet},
	} {
		if id, ok := requestID(suffix, r.prefix); ok {
			return r.kind, id
		}
	}
	if rest, ok := strings.CutPrefix(suffix, "user/"); ok && rest != "" {
		return uplinkUser, ""
	}
	return notUplink, ""
}

// requestID matches prefix + "request_id={id}" with id one non-empty
// topic level.
func requestID(s, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", false
	}
	id, ok := strings.CutPrefix(rest, "request_id=")
	if !ok || id == "" || strings.IndexByte(id, '/') >= 0 {
		return "", false
	}
	return id, true
}

// downlinks are the platform-to-device topics, after the device prefix,
// as level patterns: a level ending in '*' matches any non-empty level
// with that prefix; "**" matches one or more levels.
var downlinks = [...]string{
	"sys/messages/down",
	"sys/commands/request_id=*",
	"sys/properties/set/request_id=*",
	"sys/properties/get/request_id=*",
	"sys/shadow/get/response/request_id=*",
	"sys/events/down",
	"user/**",
}

// mayPublish reports whether a device may publish to topic.
func mayPublish(deviceID, topic string) bool {
	suffix, ok := ownSuffix(deviceID, topic)
	if !ok {
		return false
	}
	kind, _ := parseUplink(suffix)
	return kind != notUplink
}

// mayReceive reports whether a device may subscribe to filter (or be sent
// a message on topic): it must be under the device's own prefix and able
// to match one of its downlink topics.
func mayReceive(deviceID, filter string) bool {
	suffix, ok := ownSuffix(deviceID, filter)
	if !ok {
		return false
	}
	for _, p := range downlinks {
		if overlaps(suffix, p) {
			return true
		}
	}
	return false
}

// overlaps reports whether some topic matches both the MQTT filter (with
// '+' and '#') and the downlink pattern.
func overlaps(filter, pattern string) bool {
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		p, prest, pmore := strings.Cut(pattern, "/")
		if p == "**" {
			return true // the filter has at least this level left
		}
		if !levelOverlaps(f, p) {
			return false
		}
		switch {
		case !fmore && !pmore:
			return true
		case !pmore:
			// Only a trailing '#' (matching zero levels) may follow.
			return frest == "#"
		case !fmore:
			return false
		}
		filter, pattern = frest, prest
	}
}

func levelOverlaps(f, p string) bool {
	switch {
	case f == "+":
		return true
	case strings.HasSuffix(p, "*"):
		prefix := p[:len(p)-1]
		return len(f) > len(prefix) && strings.HasPrefix(f, prefix)
	default:
		return f == p
	}
}

// The topics the platform publishes to.

func commandTopic(deviceID, commandID string) string {
	return devicesPrefix + deviceID + "/sys/commands/request_id=" + commandID
}

func messagesDownTopic(deviceID string) string {
	return devicesPrefix + deviceID + "/sys/messages/down"
}
