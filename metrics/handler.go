package metrics

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Guard is what the handler asks of the platform's abuse controls
// (registry/guard): a banned address is refused, a wrong token counts
// against its address as a failed API authentication does.
type Guard interface {
	AddressBanned(addr netip.Addr) bool
	AuthFailed(identity string, addr netip.Addr) bool
}

// HandlerOptions say who may read the metrics.
type HandlerOptions struct {
	// Open serves anyone: for a listener bound to loopback only.
	Open bool
	// Tokens are the API credentials' tokens; unless Open, a request
	// must carry one, as X-Auth-Token (as the API takes it) or as
	// "Authorization: Bearer" (as Prometheus sends it).
	Tokens []string
	// Guard, when set, refuses banned addresses and counts wrong tokens.
	Guard Guard
}

// Handler serves the metrics in Prometheus' text (or negotiated) format
// to GET and HEAD requests that o admits.
func (m *Metrics) Handler(o HandlerOptions) http.Handler {
	prom := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	tokens := make([][]byte, 0, len(o.Tokens))
	for _, t := range o.Tokens {
		if t != "" {
			tokens = append(tokens, []byte(t))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !o.Open {
			addr := remoteAddr(r)
			if o.Guard != nil && o.Guard.AddressBanned(addr) {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			if !tokenIn(requestToken(r), tokens) {
				if o.Guard != nil {
					o.Guard.AuthFailed("", addr)
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="iotgate metrics"`)
				http.Error(w, "an API token is required (X-Auth-Token or Authorization: Bearer)", http.StatusUnauthorized)
				return
			}
		}
		prom.ServeHTTP(w, r)
	})
}

// requestToken is the token a request carries: X-Auth-Token, else an
// "Authorization: Bearer" credential.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Auth-Token"); t != "" {
		return t
	}
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(cred)
	}
	return ""
}

// tokenIn compares tok with every token in constant time each, so the
// answer's timing does not tell how much of a guess was right.
func tokenIn(tok string, tokens [][]byte) bool {
	if tok == "" {
		return false
	}
	found := 0
	for _, t := range tokens {
		found |= subtle.ConstantTimeCompare(t, []byte(tok))
	}
	return found == 1
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Loopback reports whether a listener's address is a loopback one
// (127.0.0.0/8, ::1): only such a listener serves the metrics without a
// token. A wildcard address (":8080") is not.
func Loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Mount serves Path with metrics and everything else with next (the
// API), on one listener. Only the exact path is taken: the API's own
// routing, redirects and 404s are untouched.
func Mount(next, metrics http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Path {
			metrics.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
