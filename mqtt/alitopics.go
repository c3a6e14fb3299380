package mqtt

import "strings"

// Alibaba topics (reference §5, Alink). A device authenticated the
// Alibaba way owns two spaces, /sys/{pk}/{dn}/... (Alink system topics)
// and /{pk}/{dn}/user/... (custom topics), and may publish and subscribe
// anywhere in them. A device of a GATEWAY product also owns
// /ext/session/{pk}/{dn}/combine/... to log its sub-devices in and out,
// and may use the two spaces of every sub-device it has logged in.

// aliSysSpace: /sys/{pk}/{dn}/{suffix}.
var aliSysSpace = &space{
	split: func(topic string) (owner, string, bool) {
		rest, ok := strings.CutPrefix(topic, "/sys/")
		if !ok {
			return owner{}, "", false
		}
		return splitPkDn(rest)
	},
	publish: []rule{
		{"thing/event/property/post", uplinkAlinkProperties},
		{"thing/service/property/set_reply", uplinkAlinkSetReply},
		{"thing/service/*", uplinkAlinkServiceReply}, // {identifier}_reply (alidownlink.go)
		{"rrpc/response/*", uplinkRRPCResponse},
		{"thing/sub/register", uplinkSubRegister},
		{"thing/topo/add", uplinkTopoAdd},
		{"thing/topo/get", uplinkTopoGet},
		{"thing/topo/delete", uplinkTopoDelete},
		{"**", uplinkAlinkOther},
	},
	receive: []string{"**"},
	proxied: true,
}

// aliUserSpace: /{pk}/{dn}/user/{suffix}.
var aliUserSpace = &space{
	split: func(topic string) (owner, string, bool) {
		rest, ok := strings.CutPrefix(topic, "/")
		if !ok {
			return owner{}, "", false
		}
		o, rest, ok := splitPkDn(rest)
		if !ok {
			return owner{}, "", false
		}
		suffix, ok := strings.CutPrefix(rest, "user/")
		return o, suffix, ok
	},
	publish: []rule{{"**", uplinkUser}},
	receive: []string{"**"},
	proxied: true,
}

// aliSessionSpace: /ext/session/{pk}/{dn}/{suffix}, a gateway's own.
var aliSessionSpace = &space{
	split: func(topic string) (owner, string, bool) {
		rest, ok := strings.CutPrefix(topic, "/ext/session/")
		if !ok {
			return owner{}, "", false
		}
		return splitPkDn(rest)
	},
	publish: []rule{
		{"combine/login", uplinkLogin},
		{"combine/batch_login", uplinkBatchLogin},
		{"combine/logout", uplinkLogout},
		{"combine/batch_logout", uplinkBatchLogout},
	},
	receive: []string{
		"combine/login_reply",
		"combine/batch_login_reply",
		"combine/logout_reply",
		"combine/batch_logout_reply",
	},
}

// The spaces of connections authenticated the Alibaba way.
var (
	aliDeviceSpaces  = []*space{aliSysSpace, aliUserSpace}
	aliGatewaySpaces = []*space{aliSysSpace, aliUserSpace, aliSessionSpace}
)

// splitPkDn cuts "{pk}/{dn}/{rest}".
func splitPkDn(s string) (owner, string, bool) {
	pk, rest, ok := cutLevel(s)
	if !ok {
		return owner{}, "", false
	}
	dn, rest, ok := cutLevel(rest)
	if !ok {
		return owner{}, "", false
	}
	return owner{a: pk, b: dn}, rest, true
}

// replyTopic is the topic of the platform's answer to an Alink request:
// the request's topic with "_reply" appended.
func replyTopic(topic string) string { return topic + "_reply" }

// Alibaba topics the platform publishes to.
const (
	registerResultTopic = "/ext/register"
	regnwlResultTopic   = "/ext/regnwl"
)
