package mqtt

import "strings"

// The ACL engine. Every topic a device may use lives in a topic space: a
// family of topics whose first levels name their owner (IoTDA:
// $oc/devices/{device_id}/..., Alibaba: /sys/{pk}/{dn}/... and others),
// followed by a suffix that names the exchange. A space says which
// suffixes its owner may publish (and what kind of uplink each is) and
// which downlink suffixes it may subscribe to; nothing else is ever
// allowed. A connection may use the spaces of its wire format (dialect)
// for itself and, in the spaces a gateway may proxy, for the sub-devices
// it has logged in (see conn.go). The functions here do not allocate: they
// run for every PUBLISH and SUBSCRIBE.

// owner is the identity a topic names: {device_id} for IoTDA topics,
// {ProductKey, DeviceName} for Alibaba topics.
type owner struct{ a, b string }

// rule maps a suffix pattern to the kind of uplink it is.
type rule struct {
	pattern string
	kind    uplink
}

// space is one family of topics.
type space struct {
	// split cuts a topic (or filter) into the owner its prefix names and
	// the suffix after it. The owner levels must be literal: a filter
	// with a wildcard there names the owner "+" and so nobody's topics.
	split func(topic string) (owner, string, bool)
	// publish classifies the suffixes the owner may publish; the first
	// matching rule wins.
	publish []rule
	// receive are the downlink suffixes the owner may subscribe to.
	receive []string
	// proxied: a gateway may use the space for its logged-in
	// sub-devices.
	proxied bool
}

// Patterns are MQTT topic levels: a level ending in '*' matches any
// non-empty level with that prefix; "**" as the last level matches the
// rest of the topic, which must not be empty (so "user/**" matches
// "user/x" and "user/x/y", not "user/").

// classify returns the kind of uplink a published suffix is, or
// notUplink if the owner may not publish it.
func (sp *space) classify(suffix string) uplink {
	for _, r := range sp.publish {
		if overlaps(suffix, r.pattern) {
			return r.kind
		}
	}
	return notUplink
}

// mayReceive reports whether the owner may subscribe to a filter suffix:
// some topic it matches is one of the space's downlinks.
func (sp *space) mayReceive(filter string) bool {
	for _, p := range sp.receive {
		if overlaps(filter, p) {
			return true
		}
	}
	return false
}

// overlaps reports whether some topic matches both the MQTT filter (with
// '+' and '#'; a topic name is a filter without them) and the pattern.
func overlaps(filter, pattern string) bool {
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		p, prest, pmore := strings.Cut(pattern, "/")
		if p == "**" {
			return filter != ""
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

// cutLevel cuts s at its first '/' and requires a non-empty first level.
func cutLevel(s string) (level, rest string, ok bool) {
	level, rest, ok = strings.Cut(s, "/")
	return level, rest, ok && level != ""
}

// uplink is the kind of a device-to-platform topic.
type uplink uint8

const (
	notUplink uplink = iota
	// IoTDA
	uplinkMessage               // sys/messages/up
	uplinkProperties            // sys/properties/report
	uplinkCommandResponse       // sys/commands/response/request_id={id}
	uplinkEvent                 // sys/events/up
	uplinkPropertiesSetResponse // sys/properties/set/response/request_id={id}
	uplinkPropertiesGetResponse // sys/properties/get/response/request_id={id}
	uplinkShadowGet             // sys/shadow/get/request_id={id}
	uplinkUser                  // user/{suffix}: a custom topic (IoTDA and Alibaba)
	// Alibaba
	uplinkAlinkProperties // /sys/{pk}/{dn}/thing/event/property/post
	uplinkAlinkOther      // any other /sys/{pk}/{dn}/ topic
	uplinkSubRegister     // /sys/{pk}/{dn}/thing/sub/register
	uplinkTopoAdd         // /sys/{pk}/{dn}/thing/topo/add
	uplinkLogin           // /ext/session/{pk}/{dn}/combine/login
	uplinkBatchLogin      // .../combine/batch_login
	uplinkLogout          // .../combine/logout
	uplinkBatchLogout     // .../combine/batch_logout
	// IoTDA gateways
	uplinkGatewayProperties // sys/gateway/sub_devices/properties/report

	// Alibaba: answers to the platform's requests (alidownlink.go), and
	// gateways' topology requests (alitopo.go)
	uplinkAlinkSetReply     // /sys/{pk}/{dn}/thing/service/property/set_reply
	uplinkAlinkServiceReply // /sys/{pk}/{dn}/thing/service/{identifier}_reply
	uplinkRRPCResponse      // /sys/{pk}/{dn}/rrpc/response/{messageId}
	uplinkTopoGet           // /sys/{pk}/{dn}/thing/topo/get
	uplinkTopoDelete        // /sys/{pk}/{dn}/thing/topo/delete
)

func (u uplink) String() string {
	return [...]string{"none", "message", "properties report", "command response", "event",
		"properties set response", "properties get response", "shadow get", "custom message",
		"alink property post", "alink message", "sub-device register", "topology add",
		"sub-device login", "sub-device batch login", "sub-device logout", "sub-device batch logout",
		"gateway sub-device properties report",
		"alink property set reply", "alink service reply", "rrpc response", "topology get", "topology delete"}[u]
}

// IoTDA topics (reference §4.3): everything under
// $oc/devices/{device_id}/.

const devicesPrefix = "$oc/devices/"

var huaweiSpace = &space{
	split: func(topic string) (owner, string, bool) {
		rest, ok := strings.CutPrefix(topic, devicesPrefix)
		if !ok {
			return owner{}, "", false
		}
		id, suffix, ok := cutLevel(rest)
		return owner{a: id}, suffix, ok
	},
	publish: []rule{
		{"sys/messages/up", uplinkMessage},
		{"sys/properties/report", uplinkProperties},
		{"sys/gateway/sub_devices/properties/report", uplinkGatewayProperties},
		{"sys/events/up", uplinkEvent},
		{"sys/commands/response/request_id=*", uplinkCommandResponse},
		{"sys/properties/set/response/request_id=*", uplinkPropertiesSetResponse},
		{"sys/properties/get/response/request_id=*", uplinkPropertiesGetResponse},
		{"sys/shadow/get/request_id=*", uplinkShadowGet},
		{"user/**", uplinkUser},
	},
	receive: []string{
		"sys/messages/down",
		"sys/commands/request_id=*",
		"sys/properties/set/request_id=*",
		"sys/properties/get/request_id=*",
		"sys/shadow/get/response/request_id=*",
		"sys/events/down",
		"user/**",
	},
}

// huaweiSpaces are the spaces of a connection authenticated the IoTDA way.
var huaweiSpaces = []*space{huaweiSpace}

// requestID returns the {id} of a suffix ending in request_id={id}.
func requestID(suffix string) string {
	i := strings.LastIndex(suffix, "request_id=")
	if i < 0 {
		return ""
	}
	return suffix[i+len("request_id="):]
}

// huaweiOwnSuffix returns what follows $oc/devices/{deviceID}/ in topic.
func huaweiOwnSuffix(deviceID, topic string) (string, bool) {
	o, suffix, ok := huaweiSpace.split(topic)
	return suffix, ok && o == owner{a: deviceID}
}

// huaweiMayReceive reports whether an IoTDA device may be sent a message
// on topic (or subscribe to it).
func huaweiMayReceive(deviceID, topic string) bool {
	suffix, ok := huaweiOwnSuffix(deviceID, topic)
	return ok && huaweiSpace.mayReceive(suffix)
}

// The topics the platform publishes to.

func commandTopic(deviceID, commandID string) string {
	return devicesPrefix + deviceID + "/sys/commands/request_id=" + commandID
}

func messagesDownTopic(deviceID string) string {
	return devicesPrefix + deviceID + "/sys/messages/down"
}
