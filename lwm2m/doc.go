// Package lwm2m is iotgate's LwM2M server: NB-IoT devices register over
// CoAP (UDP, NoSec) or CoAP over DTLS 1.2 with pre-shared keys, and
// applications reach them through the registry's asynchronous commands.
//
// It is split the way Eclipse Leshan splits a server:
//
//   - transport (the sub-package transport): the UDP and DTLS sockets and
//     go-coap's connections fed by our own loops, NoSec ones by peer
//     address and DTLS sessions by identity, checked by a periodic sweep;
//     here, what LwM2M asks of it (transport.go: per-connection state,
//     the idle policy, the router; dtls.go: PSKs from the security store,
//     Connection IDs (RFC 9146), HelloVerifyRequest cookies);
//   - security store (security.go): who may register, backed by the
//     registry (endpoint name = node_id, PSK identity = node_id);
//   - registration interface (rd.go, query.go, objects.go): Register,
//     Update and De-register on /rd, through go-coap's router;
//   - registration store (store.go): live registrations in memory, by id
//     and by endpoint, with an ordered deadline index swept periodically;
//   - device management client (devicemgmt.go): Read, Write, Execute,
//     Observe, Discover, Write-Attributes, Create and Delete towards a
//     registered client, in the content formats it declared at Register
//     (negotiate.go) when the application names none;
//   - composite operations (composite.go): Read-, Observe- and
//     Write-Composite on several paths at once, in SenML;
//   - observations (observe.go): notifications become device messages;
//   - Send (send.go): values a client pushes to /dp become a device
//     message and reported properties; a NoSec sender is found by its
//     address (peers.go);
//   - command queue (commands.go): delivers the registry's asynchronous
//     commands in order, holding them while a queue-mode client sleeps.
//   - firmware update (firmware.go, firmwareserve.go, firmwarehttp.go):
//     object 5 for the registry's firmware upgrade jobs, the Package URI
//     served with Block2 from /fw/{token}, or, to a device that pulls by
//     HTTP(S) only, by FirmwareHTTP (an http.Handler cmd/iotgate mounts
//     on the API listeners), at most a configured number of downloads at
//     once.
//
// Lines a flood could repeat (refused Registers, failed handshakes) are
// written under the budget of the sub-package ratelog.
//
// Payloads are converted by the sibling package format. Nothing here is
// known to the REST API: it sees the registry's interfaces only.
package lwm2m
