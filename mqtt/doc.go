// Package mqtt is iotgate's MQTT and MQTTS front end: an embedded mochi
// broker (github.com/mochi-mqtt/server/v2) whose behaviour is that of
// Huawei IoTDA's device access (reference §4), made of small hooks with
// one job each:
//
//	limitsHook   refuses QoS 2 and oversized publishes, drops will messages
//	authHook     authenticates CONNECT (secret HMAC or X.509) and answers
//	             refusals with IoTDA's CONNACK codes
//	aclHook      confines each device to its own topics, deny by default
//	statusHook   reports sessions to the registry (ONLINE / OFFLINE)
//	uplinkHook   hands what devices publish to the registry and to waiting
//	             commands; nothing a device publishes reaches another client
//
// The Server wires them and implements the registry's CommandSender,
// MessageSender and Kicker: the platform's commands and messages are
// written straight to the device's session, not routed through topic
// subscriptions. The package knows the registry, not the REST API or any
// other protocol.
//
// # Identity
//
// A connection is a device: the username and the ClientId
// {device_id}_0_{sign_type}_{YYYYMMDDHH} name it. After authentication
// the client's mochi id is the device id, so a device has at most one
// session (a new CONNECT takes over the old one) and every hook reads the
// device from the client id.
//
// # CONNECT refusals
//
//	                                                     MQTT 3.1.1  MQTT 5
//	keepalive outside 30–1200 s, malformed ClientId,
//	  username other than the ClientId's device id          0x02     0x85
//	unknown device, wrong password, stale sign_type 1
//	  timestamp, secure_access device on plain MQTT,
//	  certificate device without (its) certificate          0x04     0x86
//	frozen device, client certificate not trusted
//	  (unknown or unverified CA, expired)                   0x05     0x87
//	registry unavailable                                     0x03     0x88
//
// The client learns only the code; the log says why, without secrets.
//
// # Topics
//
// A device publishes, under $oc/devices/{device_id}/: sys/messages/up,
// sys/properties/report, sys/commands/response/request_id={id},
// sys/events/up, sys/properties/{set,get}/response/request_id={id},
// sys/shadow/get/request_id={id}, user/{suffix}. It may subscribe to
// filters under its own prefix that can match its downlinks:
// sys/messages/down, sys/commands/request_id={id},
// sys/properties/{set,get}/request_id={id},
// sys/shadow/get/response/request_id={id}, sys/events/down,
// user/{suffix}. Its sys/ downlinks reach it without a subscription.
//
// # Limits
//
// QoS 0 and 1 (QoS 2 publishes close the connection, QoS 2 subscriptions
// are granted QoS 1), payloads up to 1 MiB, no retained messages, no will
// messages, no session kept after disconnection, no topic aliases from
// clients.
package mqtt
