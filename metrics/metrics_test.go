package metrics

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/metrics/metricstest"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs h's metrics and parses them.
func scrape(t *testing.T, h http.Handler, header http.Header) map[string]*dto.MetricFamily {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, Path, nil)
	r.Header = header
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", w.Code, w.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(w.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// value is the value of the family's series with labels (name=value
// pairs), or -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	if v, ok := metricstest.Value(fams, name, labels...); ok {
		return v
	}
	return -1
}

func TestSourcesAndHistograms(t *testing.T) {
	m := New()
	err := m.AddSources(Sources{
		Protocols: map[string]func() ProtocolStats{
			"mqtt": func() ProtocolStats {
				return ProtocolStats{Sessions: 3, Connects: map[string]uint64{"accepted": 5, "bad_credentials": 2},
					AuthFailures: map[string]uint64{"bad_secret": 2}, MessagesIn: 7, MessagesOut: 1}
			},
		},
		Commands: func() []registry.CommandCount {
			return []registry.CommandCount{{Kind: registry.CommandAsync, Status: "TIMEOUT", Count: 4}}
		},
		Bans: func(context.Context) ([]guard.Ban, error) {
			return []guard.Ban{{Target: guard.Target{Identity: "d"}, Source: guard.SourceAuto}}, nil
		},
		AutoBans:   func() map[string]uint64 { return map[string]uint64{"flapping": 1} },
		StoreBytes: func() int64 { return 4096 },
		Connections: func() []ConnectionPool {
			return []ConnectionPool{{Pool: "mqtt", Limit: 100, Open: 60, Refused: 9}}
		},
		Forwarding: func(context.Context) []ForwardingStats {
			return []ForwardingStats{{Action: "a1", Delivered: 9, Dropped: 2, DroppedAge: 3, DroppedSize: 5, Backlog: 7}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Written(3 * time.Millisecond)
	m.Committed(12)
	m.Handshake("ok", 40*time.Millisecond)
	m.Handshake("failed", time.Second)
	m.Handshake("no such result", time.Second)
	m.ForwardDelivered("a1", 20*time.Millisecond)
	m.ForwardDelivered("a1", 3*time.Second)

	fams := scrape(t, m.Handler(HandlerOptions{Open: true}), nil)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"iotgate_sessions", []string{"protocol", "mqtt"}, 3},
		{"iotgate_connects_total", []string{"protocol", "mqtt", "result", "accepted"}, 5},
		{"iotgate_connects_total", []string{"protocol", "mqtt", "result", "bad_credentials"}, 2},
		{"iotgate_auth_failures_total", []string{"protocol", "mqtt", "reason", "bad_secret"}, 2},
		{"iotgate_messages_total", []string{"protocol", "mqtt", "direction", "in"}, 7},
		{"iotgate_messages_total", []string{"protocol", "mqtt", "direction", "out"}, 1},
		{"iotgate_commands_total", []string{"kind", "async", "status", "TIMEOUT"}, 4},
		{"iotgate_bans", []string{"source", "auto", "target", "identity"}, 1},
		{"iotgate_bans", []string{"source", "manual", "target", "address"}, 0},
		{"iotgate_bans_imposed_total", []string{"rule", "flapping"}, 1},
		{"iotgate_store_size_bytes", nil, 4096},
		{"iotgate_connection_pool_limit", []string{"pool", "mqtt"}, 100},
		{"iotgate_connection_pool_open", []string{"pool", "mqtt"}, 60},
		{"iotgate_connection_pool_refused_total", []string{"pool", "mqtt"}, 9},
		{"iotgate_forwarding_delivered_total", []string{"action", "a1"}, 9},
		{"iotgate_forwarding_dropped_total", []string{"action", "a1"}, 2},
		{"iotgate_forwarding_backlog_dropped_total", []string{"action", "a1", "bound", "age"}, 3},
		{"iotgate_forwarding_backlog_dropped_total", []string{"action", "a1", "bound", "size"}, 5},
		{"iotgate_forwarding_backlog_positions", []string{"action", "a1"}, 7},
		{"iotgate_store_write_duration_seconds", nil, 1},
		{"iotgate_store_commit_batch_size", nil, 1},
		{"iotgate_dtls_handshake_duration_seconds", []string{"result", "ok"}, 1},
		{"iotgate_dtls_handshake_duration_seconds", []string{"result", "failed"}, 1},
		{"iotgate_dtls_handshake_duration_seconds", []string{"result", "abandoned"}, 0},
		{"iotgate_forwarding_delay_seconds", []string{"action", "a1"}, 2},
	} {
		if got := value(fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s %v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if n := len(fams["iotgate_dtls_handshake_duration_seconds"].GetMetric()); n != 3 {
		t.Errorf("%d handshake series, want 3 (an unknown result adds none)", n)
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("no %s: the runtime and process collectors are missing", name)
		}
	}
}

// fakeGuard bans one address and records failures.
type fakeGuard struct {
	banned   netip.Addr
	failures int
}

func (g *fakeGuard) AddressBanned(a netip.Addr) bool    { return a == g.banned }
func (g *fakeGuard) AuthFailed(string, netip.Addr) bool { g.failures++; return false }
func (g *fakeGuard) String() string                     { return "" }
func header(kv ...string) http.Header                   { h := http.Header{}; addAll(h, kv); return h }
func addAll(h http.Header, kv []string) {
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
}

func TestHandlerAuthorization(t *testing.T) {
	m := New()
	g := &fakeGuard{banned: netip.MustParseAddr("192.0.2.9")}
	h := m.Handler(HandlerOptions{Tokens: []string{"tok-one", ""}, Guard: g})
	for _, tc := range []struct {
		name   string
		method string
		remote string
		header http.Header
		want   int
	}{
		{"no token", http.MethodGet, "192.0.2.1:5000", nil, http.StatusUnauthorized},
		{"wrong token", http.MethodGet, "192.0.2.1:5000", header("X-Auth-Token", "tok-two"), http.StatusUnauthorized},
		{"empty bearer", http.MethodGet, "192.0.2.1:5000", header("Authorization", "Bearer "), http.StatusUnauthorized},
		{"basic auth", http.MethodGet, "192.0.2.1:5000", header("Authorization", "Basic dG9rLW9uZQ=="), http.StatusUnauthorized},
		{"X-Auth-Token", http.MethodGet, "192.0.2.1:5000", header("X-Auth-Token", "tok-one"), http.StatusOK},
		{"bearer", http.MethodGet, "192.0.2.1:5000", header("Authorization", "Bearer tok-one"), http.StatusOK},
		{"HEAD", http.MethodHead, "192.0.2.1:5000", header("X-Auth-Token", "tok-one"), http.StatusOK},
		{"POST", http.MethodPost, "192.0.2.1:5000", header("X-Auth-Token", "tok-one"), http.StatusMethodNotAllowed},
		{"banned address, right token", http.MethodGet, "192.0.2.9:5000", header("X-Auth-Token", "tok-one"), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, Path, nil)
			r.RemoteAddr = tc.remote
			if tc.header != nil {
				r.Header = tc.header
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%d, want %d", w.Code, tc.want)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
		})
	}
	if g.failures != 4 {
		t.Errorf("%d failed authentications told to the guard, want 4", g.failures)
	}
	// Open: no token needed.
	scrape(t, m.Handler(HandlerOptions{Open: true}), nil)
}

func TestMount(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	met := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	h := Mount(api, met)
	for path, want := range map[string]int{"/metrics": http.StatusAccepted, "/metrics/": http.StatusTeapot,
		"/v5/iot/p/devices": http.StatusTeapot, "//metrics": http.StatusTeapot} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://x"+path, nil))
		if w.Code != want {
			t.Errorf("%s: %d, want %d", path, w.Code, want)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:80": true, "127.3.4.5:80": true, "[::1]:80": true,
		"0.0.0.0:80": false, "[::]:80": false, "192.0.2.1:80": false} {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := Loopback(ta); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if Loopback(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) {
		t.Error("a UDP address counted as a TCP loopback listener")
	}
}
