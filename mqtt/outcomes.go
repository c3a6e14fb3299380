package mqtt

import "sync/atomic"

// connectResult is what became of a CONNECT, as Stats.Connects names it.
type connectResult uint8

const (
	connectAccepted connectResult = iota
	connectIdentifierRejected
	connectServerUnavailable
	connectBadCredentials
	connectNotAuthorized
	connectTooLarge
	connectBanned // refused, not authorized, because a ban holds
	numConnectResults
)

// connectResultNames are the labels of connectResult.
var connectResultNames = [numConnectResults]string{
	connectAccepted:           "accepted",
	connectIdentifierRejected: "identifier_rejected",
	connectServerUnavailable:  "server_unavailable",
	connectBadCredentials:     "bad_credentials",
	connectNotAuthorized:      "not_authorized",
	connectTooLarge:           "packet_too_large",
	connectBanned:             "banned",
}

// authFailure is why a CONNECT failed authentication (0: it did not),
// as Stats.AuthFailures names it. The set is fixed and small: a label
// per device would let anyone grow the metrics without bound.
type authFailure uint8

const (
	notFailed authFailure = iota
	failedUnknownDevice
	failedBadSecret
	failedStaleTimestamp
	failedBadCertificate
	numAuthFailures
)

// authFailureNames are the labels of authFailure.
var authFailureNames = [numAuthFailures]string{
	failedUnknownDevice:  "unknown_device",
	failedBadSecret:      "bad_secret",
	failedStaleTimestamp: "stale_timestamp",
	failedBadCertificate: "bad_certificate",
}

// outcomes counts CONNECTs by result and failed authentications by
// reason: an atomic add each, no lock, no allocation.
type outcomes struct {
	connects     [numConnectResults]atomic.Uint64
	authFailures [numAuthFailures]atomic.Uint64
}

// refused counts a refused CONNECT.
func (o *outcomes) refused(r *refusal) {
	res := r.code.result
	if r.banned {
		res = connectBanned
	}
	o.connects[res].Add(1)
	if r.failure != notFailed {
		o.authFailures[r.failure].Add(1)
	}
}

// snapshot returns the counts by label, leaving out failure reason 0.
func (o *outcomes) snapshot() (connects, failures map[string]uint64) {
	connects = make(map[string]uint64, numConnectResults)
	for i := range o.connects {
		connects[connectResultNames[i]] = o.connects[i].Load()
	}
	failures = make(map[string]uint64, numAuthFailures-1)
	for i := failedUnknownDevice; i < numAuthFailures; i++ {
		failures[authFailureNames[i]] = o.authFailures[i].Load()
	}
	return connects, failures
}
