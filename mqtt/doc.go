// Package mqtt is iotgate's MQTT and MQTTS front end: an embedded mochi
// broker (github.com/mochi-mqtt/server/v2) that speaks Huawei IoTDA's
// device access (reference §4) and Alibaba Cloud IoT's device
// authentication, Alink topics and gateways (alibaba-iot.md), made of
// small hooks with one job each:
//
//	limitsHook        refuses QoS 2 and oversized publishes, drops will
//	                  messages
//	authHook          authenticates CONNECT in either wire format (IoTDA
//	                  secret HMAC or X.509; Alibaba device secret,
//	                  DeviceToken, or dynamic registration by product
//	                  secret) and answers refusals with their CONNACK codes
//	aclHook           confines each connection to its own topics, deny by
//	                  default
//	statusHook        reports sessions to the registry (ONLINE / OFFLINE),
//	                  a gateway's sub-devices' included
//	registrationHook  sends a registration connection its result, then
//	                  closes it
//	gatewayHook       serves an Alibaba gateway's sub-device registration,
//	                  topology and login requests
//	hwGatewayHook     serves an IoTDA gateway's $sub_device_manager events
//	                  (add, delete, status of its sub-devices) and its
//	                  reports of their properties and messages
//	uplinkHook        hands what devices publish to the registry and to
//	                  waiting commands; nothing a device publishes reaches
//	                  another client
//
// The hooks share one table (conn.go): what authHook established about
// each connection, the device it speaks for, the topic spaces it may use
// and the sub-devices a gateway has logged in. The Server wires them and
// implements the registry's CommandSender, MessageSender and Kicker: the
// platform's commands and messages are written straight to the device's
// session, not routed through topic subscriptions. The package knows the
// registry, not the REST API or any other protocol.
//
// # Identity
//
// A connection is a device. IoTDA: the username and the ClientId
// {device_id}_0_{sign_type}_{YYYYMMDDHH} name it. Alibaba: the username
// DeviceName&ProductKey, where ProductKey is the product id and DeviceName
// the node id; the ClientId clientId|securemode=...,signmethod=...|
// carries the sign's parameters. The two are told apart by shape ('|',
// '&'), and both verify secrets through the registry. After
// authentication the client's mochi id is the device id, so a device has
// at most one session (a new CONNECT takes over the old one). A
// registration connection (Alibaba authType register or regnwl) speaks
// for no device: it gets its result on /ext/register or /ext/regnwl and
// may do nothing else.
//
// # CONNECT refusals
//
// IoTDA:
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
// Alibaba (details in aliauth.go): 0x02 for a malformed ClientId or
// parameters, a securemode not that of the listener, a registration over
// plain MQTT, a keepalive outside 30–1200 s; 0x04 for a malformed username
// or password and for a registration with a wrong product-secret sign;
// 0x05 for an unknown device, a wrong sign or token, secure_access on
// plain MQTT, a frozen device, or a registration the product or device
// refuses; 0x03 if the registry is unavailable.
//
// The client learns only the code; the log says why, without secrets.
//
// # Topics
//
// IoTDA: a device publishes, under $oc/devices/{device_id}/:
// sys/messages/up, sys/properties/report,
// sys/gateway/sub_devices/properties/report,
// sys/commands/response/request_id={id}, sys/events/up,
// sys/properties/{set,get}/response/request_id={id},
// sys/shadow/get/request_id={id}, user/{suffix}. It may subscribe to
// filters under its own prefix that can match its downlinks:
// sys/messages/down, sys/commands/request_id={id},
// sys/properties/{set,get}/request_id={id},
// sys/shadow/get/response/request_id={id}, sys/events/down,
// user/{suffix}. Its sys/ downlinks reach it without a subscription.
//
// An IoTDA gateway (a device of a GATEWAY product) speaks for its
// sub-devices on its own topics (hwgateway.go): the sub-devices it reports
// ONLINE have sessions through its connection, and the platform's
// requests for them go to its topics with object_device_id naming them.
//
// Alibaba: a device publishes and subscribes anywhere under
// /sys/{pk}/{dn}/ and /{pk}/{dn}/user/, and nothing else; a gateway also
// under /ext/session/{pk}/{dn}/combine/, and in the two spaces of each
// sub-device it has logged in. Property posts
// (/sys/{pk}/{dn}/thing/event/property/post) update the shadow as
// alink.go describes and are answered on their _reply topic; custom
// topics are kept as messages. The platform's property sets and commands
// reach such a session as Alink (thing.service.property.set, an RRPC call
// of thing.service.{identifier}), as alidownlink.go describes.
//
// # Limits
//
// QoS 0 and 1 (QoS 2 publishes close the connection, QoS 2 subscriptions
// are granted QoS 1), payloads up to 1 MiB, no retained messages, no will
// messages, no session kept after disconnection, no topic aliases from
// clients.
package mqtt
