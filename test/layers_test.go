package test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The layers a reader sees in the folder list hold in the import graph:
// only the Badger engine imports Badger, only the PostgreSQL engine (and
// pgtest, its test-server starter) pgx;
// the domain imports no engine and no adapter; the adapters (api, lwm2m,
// mqtt, activation) import no engine and not each other, nor the
// forwarding engine, which imports none of them nor its own channels;
// the console imports no other layer; only metrics imports Prometheus,
// and it imports no adapter or engine.
func TestLayers(t *testing.T) {
	const mod = "github.com/iotgate/iotgate/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		imports[strings.TrimPrefix(f[0], mod)] = f[1:]
	}
	if len(imports) < 10 {
		t.Fatalf("go list found %d packages", len(imports))
	}
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for pkg, imps := range imports {
		for _, imp := range imps {
			if strings.HasPrefix(imp, "github.com/dgraph-io/badger") && pkg != "registry/kv/badgerkv" {
				t.Errorf("%s imports Badger; only registry/kv/badgerkv may", pkg)
			}
			if strings.HasPrefix(imp, "github.com/jackc/pgx") && pkg != "registry/kv/pgkv" && pkg != "registry/kv/pgkv/pgtest" {
				t.Errorf("%s imports pgx; only registry/kv/pgkv may", pkg)
			}
		}
	}
	layer := func(p string) string {
		p = strings.TrimPrefix(p, mod)
		for _, l := range []string{"registry/kv/badgerkv", "registry/kv/pgkv", "api", "lwm2m", "mqtt", "activation", "metrics", "forwarding", "console", "registry"} {
			if p == l || strings.HasPrefix(p, l+"/") {
				return l
			}
		}
		return ""
	}
	forbidden := map[string][]string{
		"registry":   {"registry/kv/badgerkv", "registry/kv/pgkv", "api", "lwm2m", "mqtt", "activation", "forwarding"},
		"api":        {"registry/kv/badgerkv", "registry/kv/pgkv", "lwm2m", "mqtt", "activation", "forwarding"},
		"lwm2m":      {"registry/kv/badgerkv", "registry/kv/pgkv", "api", "mqtt", "activation", "forwarding"},
		"mqtt":       {"registry/kv/badgerkv", "registry/kv/pgkv", "api", "lwm2m", "activation", "forwarding"},
		"activation": {"registry/kv/badgerkv", "registry/kv/pgkv", "api", "lwm2m", "mqtt", "forwarding"},
		// The metrics read the adapters through functions cmd/iotgate
		// hands them.
		"metrics": {"registry/kv/badgerkv", "registry/kv/pgkv", "api", "lwm2m", "mqtt", "activation", "forwarding"},
		// The delivery engine reaches destinations only through the
		// channels cmd/iotgate gives it (checked below).
		"forwarding": {"registry/kv/badgerkv", "registry/kv/pgkv", "api", "lwm2m", "mqtt", "activation"},
		// The console is static files that call the REST API from the
		// browser: it imports no other layer.
		"console": {"registry/kv/badgerkv", "registry/kv/pgkv", "api", "lwm2m", "mqtt", "activation", "metrics", "forwarding", "registry"},
	}
	for _, d := range deps("forwarding") {
		if strings.HasPrefix(d, mod+"forwarding/") {
			t.Errorf("the forwarding engine depends on the channel %s", d)
		}
	}
	for _, pkg := range []string{"registry", "registry/regions", "api", "lwm2m", "mqtt", "activation", "metrics", "forwarding", "console"} {
		for _, d := range deps(pkg) {
			// Only the metrics package knows Prometheus: the others keep
			// counters it reads.
			if strings.HasPrefix(d, "github.com/prometheus/") && pkg != "metrics" {
				t.Errorf("%s depends on Prometheus (%s)", pkg, d)
			}
			if strings.HasPrefix(d, "github.com/dgraph-io/badger") {
				t.Errorf("%s depends on Badger", pkg)
			}
			if strings.HasPrefix(d, "github.com/jackc/pgx") {
				t.Errorf("%s depends on pgx", pkg)
			}
			for _, f := range forbidden[layer(pkg)] {
				if layer(d) == f && !leafAllowed(pkg, d) {
					t.Errorf("%s depends on %s (through %s)", pkg, f, d)
				}
			}
		}
	}
	// The LwM2M adapter's leaves (below) must stay leaves: lwm2m/format
	// and lwm2m/ratelog import nothing of the project, lwm2m/transport
	// only lwm2m/ratelog.
	for _, leaf := range lwm2mLeaves {
		for _, d := range deps(strings.TrimPrefix(leaf, mod)) {
			if strings.HasPrefix(d, mod) && !slices.Contains(lwm2mLeaves, d) {
				t.Errorf("%s depends on %s: it must stay a leaf", leaf, d)
			}
		}
	}
	// The device import is a client of the REST API, like any other.
	for _, d := range deps("cmd/iotgate/devimport") {
		if strings.HasPrefix(d, mod) && d != mod+"cmd/iotgate/devimport" {
			t.Errorf("cmd/iotgate/devimport depends on %s: it may know the API only by its wire format", d)
		}
	}
}

// lwm2mLeaves are the LwM2M adapter's packages that know no LwM2M
// server: its codecs (lwm2m/format), and its CoAP-over-DTLS transport
// (lwm2m/transport, with its rate-limited log, lwm2m/ratelog).
var lwm2mLeaves = []string{
	"github.com/iotgate/iotgate/lwm2m/format",
	"github.com/iotgate/iotgate/lwm2m/transport",
	"github.com/iotgate/iotgate/lwm2m/ratelog",
}

// leafAllowed reports an adapter's allowed use of another adapter's leaf
// package: the activation centre's LwM2M Bootstrap server writes the
// Security and Server objects with lwm2m/format, the codecs the LwM2M
// adapter uses (one TLV codec, not two), and serves DTLS on
// lwm2m/transport (one DTLS mux and handshake limiter, not two); both
// import no LwM2M server code (checked above).
func leafAllowed(pkg, dep string) bool {
	return strings.HasPrefix(pkg, "activation") && slices.Contains(lwm2mLeaves, dep)
}
