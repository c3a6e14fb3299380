// Package transport carries the LwM2M server's CoAP over UDP (NoSec) and
// over DTLS 1.2: the sockets, the DTLS datagram mux and listener, and
// go-coap's connections fed by loops of ours, checked by a periodic
// sweep. It knows nothing of LwM2M: the caller gives go-coap's
// configuration (handler, connection hooks, idle monitor) and the pion
// configuration (PSKs, cipher suites).
//
//   - udpsocket.go: a UDP socket that answers each peer from the address
//     and interface its datagrams came in on;
//   - udpserver.go: NoSec CoAP, one go-coap connection per peer address,
//     made on its first datagram and closed when idle;
//   - dtlsmux.go: the DTLS socket, routing records by Connection ID
//     (RFC 9146) or address, with re-handshakes from a known address;
//   - dtlslistener.go: bounded pion handshakes over the mux;
//   - dtlsserver.go: go-coap connections on the handshaken sessions;
//   - goconn.go, sweep.go: go-coap's connection machinery and the sweep
//     that drives its retransmissions and idle checks;
//   - pionlog.go: pion's log lines into the platform's slog.
package transport
