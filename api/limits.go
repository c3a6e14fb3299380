package api

import (
	"time"
)

// Limits bound what one client can make the API do or hold. The
// per-credential and per-address rates are token buckets: Rate requests
// a second on average, Burst at once.
type Limits struct {
	// Rate and Burst limit each configured credential (its AK/SK and its
	// token share one bucket). Rate <= 0 disables the limit.
	Rate  float64
	Burst int
	// UnauthenticatedRate and UnauthenticatedBurst limit, per source
	// address (an IPv4 address, an IPv6 /64), the requests no credential
	// vouches for: failed authentications and device-side registrations.
	// An address whose bucket is empty is refused before any signature
	// is checked. Rate <= 0 disables the limit.
	UnauthenticatedRate  float64
	UnauthenticatedBurst int
	// MaxBodyBytes bounds a request body; larger is 413. <= 0: 2 MiB.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds the request line and headers. <= 0: 64 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading the request line and headers (and
	// the TLS handshake), ReadTimeout the whole request, WriteTimeout the
	// time from the end of the headers to the end of the answer (it must
	// outlast a synchronous command), IdleTimeout a kept-alive
	// connection between requests. <= 0: the defaults below.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxConnsPerAddress caps the open connections from one source
	// address (see LimitConnsPerAddress). <= 0 disables the cap.
	MaxConnsPerAddress int
}

// DefaultLimits are the limits of configs/iotgate.yaml.
func DefaultLimits() Limits {
	return Limits{
		Rate: 50, Burst: 100,
		UnauthenticatedRate: 5, UnauthenticatedBurst: 20,
		MaxBodyBytes:       2 << 20,
		MaxHeaderBytes:     64 << 10,
		ReadHeaderTimeout:  10 * time.Second,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       60 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxConnsPerAddress: 256,
	}
}

// withDefaults fills the sizes and timeouts left at zero; rates and the
// connection cap stay as given (zero disables them).
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	for _, p := range []struct{ v, d *time.Duration }{{&l.ReadHeaderTimeout, &d.ReadHeaderTimeout},
		{&l.ReadTimeout, &d.ReadTimeout}, {&l.WriteTimeout, &d.WriteTimeout}, {&l.IdleTimeout, &d.IdleTimeout}} {
		if *p.v <= 0 {
			*p.v = *p.d
		}
	}
	return l
}
