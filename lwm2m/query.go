package lwm2m

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// regParams are the Uri-Query parameters of a Register or Update request
// (LwM2M 1.1 TS Transport §6.2 and TS Core §6.2.1, which 1.0.2 also uses).
type regParams struct {
	Endpoint string // ep
	// Lifetime is lt; zero when absent.
	Lifetime time.Duration
	Version  string // lwm2m
	Binding  string // b; "" when absent
	SMS      string // sms
	SMSSet   bool
	// Queue is the LwM2M 1.1 Q parameter (queue mode without "Q" in b).
	Queue bool
}

// queueMode reports whether the client asked for queue mode, in the 1.0
// way (a Q in the binding) or the 1.1 way (the Q parameter).
func (p *regParams) queueMode() bool { return p.Queue || strings.ContainsRune(p.Binding, 'Q') }

// queryError is a bad parameter: its message is the 4.00 diagnostic.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

func badQuery(format string, a ...any) error { return &queryError{msg: fmt.Sprintf(format, a...)} }

// maxEndpointLen bounds ep: node ids are at most 64 characters, plus a
// urn:imei: prefix, with room to spare.
const maxEndpointLen = 128

// parseRegQuery reads the query options of a Register (register true) or
// Update. Unknown parameters are ignored, as LwM2M asks of servers;
// repeated known ones, malformed values and (for Register) a missing ep
// are errors. Lifetime bounds are the caller's.
func parseRegQuery(queries []string, register bool) (regParams, error) {
	var p regParams
	var seen uint8
	const (
		seenEp = 1 << iota
		seenLt
		seenVer
		seenB
		seenSMS
		seenQ
	)
	for _, q := range queries {
		name, value, hasValue := strings.Cut(q, "=")
		var bit uint8
		switch name {
		case "ep":
			bit = seenEp
			if !register {
				return p, badQuery("ep is not allowed in an Update")
			}
			if err := checkEndpoint(value); err != nil {
				return p, err
			}
			p.Endpoint = value
		case "lt":
			bit = seenLt
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil || n == 0 {
				return p, badQuery("lt %q is not a positive number of seconds", value)
			}
			p.Lifetime = time.Duration(n) * time.Second
		case "lwm2m":
			bit = seenVer
			if !register {
				return p, badQuery("lwm2m is not allowed in an Update")
			}
			p.Version = value
		case "b":
			bit = seenB
			if err := checkBinding(value); err != nil {
				return p, err
			}
			p.Binding = value
		case "sms":
			bit = seenSMS
			p.SMS, p.SMSSet = value, true
		case "Q":
			bit = seenQ
			if hasValue {
				return p, badQuery("Q takes no value")
			}
			p.Queue = true
		default:
			continue
		}
		if seen&bit != 0 {
			return p, badQuery("parameter %s given twice", name)
		}
		seen |= bit
	}
	if register && seen&seenEp == 0 {
		return p, badQuery("ep (endpoint name) is required")
	}
	return p, nil
}

func checkEndpoint(ep string) error {
	if ep == "" {
		return badQuery("ep is empty")
	}
	if len(ep) > maxEndpointLen {
		return badQuery("ep is longer than %d bytes", maxEndpointLen)
	}
	for i := 0; i < len(ep); i++ {
		if c := ep[i]; c <= ' ' || c >= 0x7f {
			return badQuery("ep contains byte 0x%02x; endpoint names are printable ASCII", c)
		}
	}
	return nil
}

// checkBinding accepts LwM2M 1.0 bindings (U, UQ, S, SQ, US, UQS) and 1.1
// ones (any of U, M, H, T, S, N once each), with Q for queue mode. Only U
// can reach this server; a binding without it is refused rather than
// registered unreachable.
func checkBinding(b string) error {
	if b == "" {
		return badQuery("b is empty")
	}
	var seen [128]bool
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !strings.ContainsRune("UMHTSNQ", rune(c)) {
			return badQuery("b %q: unknown binding %q", b, c)
		}
		if seen[c] {
			return badQuery("b %q: %q given twice", b, c)
		}
		seen[c] = true
	}
	if !seen['U'] {
		return badQuery("b %q: this server speaks UDP only, the binding must include U", b)
	}
	return nil
}

// supportedVersion reports whether the server speaks the client's LwM2M
// version (1.0, 1.0.x, 1.1, 1.1.x, 1.2...): a major version other than 1
// gets 4.12 Precondition Failed, as LwM2M 1.1 asks. An empty version is
// LwM2M 1.0.
func supportedVersion(v string) bool {
	if v == "" {
		return true
	}
	major, minor, ok := strings.Cut(v, ".")
	if !ok || major != "1" || minor == "" {
		return false
	}
	for _, part := range strings.Split(minor, ".") {
		if part == "" || len(part) > 3 {
			return false
		}
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}
