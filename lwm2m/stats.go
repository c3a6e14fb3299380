package lwm2m

import (
	"sync/atomic"

	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// registerResult is what became of a Register, as Stats.Registers names
// it.
type registerResult uint8

const (
	registerAccepted registerResult = iota // 2.01
	registerRefused                        // 4.03: not authorized, banned, frozen
	registerRejected                       // another 4.xx: a malformed or unsupported request
	registerError                          // 5.xx: the platform could not decide
	numRegisterResults
)

var registerResultNames = [numRegisterResults]string{
	registerAccepted: "accepted",
	registerRefused:  "refused",
	registerRejected: "rejected",
	registerError:    "error",
}

// authFailure is why a client failed authentication (0: it did not), as
// Stats.AuthFailures names it: a fixed set, never a per-device label.
type authFailure uint8

const (
	notFailed authFailure = iota
	failedUnknownEndpoint
	failedIdentityMismatch // the endpoint is not the DTLS PSK identity's
	failedSecureRequired   // a secure_access device over NoSec
	failedHandshake        // a DTLS handshake failed after the cookie
	numAuthFailures
)

var authFailureNames = [numAuthFailures]string{
	failedUnknownEndpoint:  "unknown_endpoint",
	failedIdentityMismatch: "identity_mismatch",
	failedSecureRequired:   "secure_required",
	failedHandshake:        "dtls_handshake",
}

// counters are the server's counters: an atomic add each, no lock.
type counters struct {
	registers    [numRegisterResults]atomic.Uint64
	authFailures [numAuthFailures]atomic.Uint64
	messagesIn   atomic.Uint64
	messagesOut  atomic.Uint64
}

// registerAnswered counts a Register by the code it was answered with.
func (c *counters) registerAnswered(code codes.Code) {
	r := registerError
	switch {
	case code == codes.Created:
		r = registerAccepted
	case code == codes.Forbidden:
		r = registerRefused
	case code >= codes.BadRequest && code < codes.InternalServerError:
		r = registerRejected
	}
	c.registers[r].Add(1)
}

// Stats are the server's counters since start.
type Stats struct {
	// Registers counts Register requests by their answer: "accepted"
	// (2.01), "refused" (4.03: failed authentication, a ban, a frozen
	// device), "rejected" (another 4.xx: malformed, unsupported version,
	// lifetime out of range) and "error" (5.xx). Every result is a key.
	Registers map[string]uint64
	// AuthFailures counts failed authentications by reason:
	// "unknown_endpoint", "identity_mismatch" (the endpoint is not the
	// DTLS PSK identity's device), "secure_required" (a secure_access
	// device over NoSec) and "dtls_handshake" (a handshake that failed
	// after the client proved its address). Every reason is a key.
	AuthFailures map[string]uint64
	// MessagesIn counts the notifications received and kept as device
	// messages; MessagesOut the requests sent to clients (read, write,
	// execute, observe, ...; retransmissions not counted).
	MessagesIn, MessagesOut uint64
}

// Stats returns the counters since start.
func (s *Server) Stats() Stats {
	st := Stats{Registers: make(map[string]uint64, numRegisterResults), AuthFailures: make(map[string]uint64, numAuthFailures-1),
		MessagesIn: s.stats.messagesIn.Load(), MessagesOut: s.stats.messagesOut.Load()}
	for i := range s.stats.registers {
		st.Registers[registerResultNames[i]] = s.stats.registers[i].Load()
	}
	for i := failedUnknownEndpoint; i < numAuthFailures; i++ {
		st.AuthFailures[authFailureNames[i]] = s.stats.authFailures[i].Load()
	}
	return st
}
