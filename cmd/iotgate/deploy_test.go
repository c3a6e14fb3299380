package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/registry"
	"gopkg.in/yaml.v3"
)

// unitDirectives reads a systemd unit: each "Key=value" line, by key,
// in order (a key may repeat).
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: %q is not Key=value", path, l)
		}
		out[k] = append(out[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	unitPath := filepath.Join(repoRoot, "deploy/systemd/iotgate.service")
	d := unitDirectives(t, unitPath)
	one := func(k string) string {
		if v := d[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for k, want := range map[string]string{
		"DynamicUser":             "yes",
		"StateDirectory":          "iotgate",
		"ConfigurationDirectory":  "iotgate",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "", // the default ports need none
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Restart":                 "on-failure",
		"ExecReload":              "/bin/kill -HUP $MAINPID", // SIGHUP reloads the certificates
	} {
		if got, ok := d[k]; !ok || one(k) != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if !strings.Contains(strings.Join(d["SystemCallFilter"], " "), "@system-service") {
		t.Errorf("SystemCallFilter=%v: want @system-service", d["SystemCallFilter"])
	}
	if n, err := strconv.Atoi(one("LimitNOFILE")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%s: every device holds a socket, want at least 65536", one("LimitNOFILE"))
	}

	// ExecStart serves the configuration the unit's ConfigurationDirectory
	// holds, and that configuration keeps its state in StateDirectory.
	argv := strings.Fields(one("ExecStart"))
	if len(argv) != 4 || argv[1] != "serve" || argv[2] != "-config" {
		t.Fatalf("ExecStart=%s: want BINARY serve -config FILE", one("ExecStart"))
	}
	if want := "/etc/" + one("ConfigurationDirectory") + "/iotgate.yaml"; argv[3] != want {
		t.Errorf("ExecStart reads %s, want %s", argv[3], want)
	}
	cfg, err := loadConfig(filepath.Join(repoRoot, "deploy/systemd/iotgate.yaml"))
	if err != nil {
		t.Fatalf("the unit's example configuration: %v", err)
	}
	if want := "/var/lib/" + one("StateDirectory"); cfg.DataDir != want {
		t.Errorf("data_dir %s: want the unit's StateDirectory, %s", cfg.DataDir, want)
	}
	for _, a := range cfg.listenAddrs() {
		_, port, err := net.SplitHostPort(a.addr)
		if p, _ := strconv.Atoi(port); err != nil || p < 1024 {
			t.Errorf("%s %s: a port below 1024 needs CAP_NET_BIND_SERVICE, which the unit does not grant", a.key, a.addr)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze: the unit was checked only by the directives above")
	}
	// verify needs ExecStart's binary to exist: this test's own stands in.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "iotgate.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte(argv[0]), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Unknown keys and bad values are only warnings to verify: any output
	// about the unit fails.
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", unit).CombinedOutput()
	if err != nil {
		t.Logf("systemd-analyze security --offline (systemd 250 or later) did not run: %v\n%s", err, out)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for iotgate\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	// 0 is fully locked down, 10 not at all; systemd calls < 2 "OK".
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level >= 2 {
		t.Errorf("systemd-analyze security: exposure %s, want below 2\n%s", m[1], out)
	}
}

// composeFile is what TestClusterExample reads of docker-compose.yml.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Networks    yaml.Node         `yaml:"networks"`
	} `yaml:"services"`
}

func TestClusterExample(t *testing.T) {
	for _, tool := range []string{"bash", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s to run setup.sh", tool)
		}
	}
	// setup.sh runs in a copy, as a user would run it in theirs.
	src := filepath.Join(repoRoot, "deploy/cluster")
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), "node-") || e.Name() == ".env" {
			continue // what an earlier run of setup.sh made there
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := e.Info()
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("bash", filepath.Join(dir, "setup.sh")).CombinedOutput(); err != nil {
		t.Fatalf("setup.sh: %v\n%s", err, out)
	}
	env := map[string]string{}
	envFile, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(envFile)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	if _, err := registry.ParseMasterKey(env["IOTGATE_MASTER_KEY"]); err != nil {
		t.Errorf(".env's IOTGATE_MASTER_KEY: %v", err)
	}

	b, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// Every variable the file interpolates is one setup.sh defines.
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)`).FindAllSubmatch(b, -1) {
		if env[string(m[1])] == "" {
			t.Errorf("docker-compose.yml uses ${%s}, which .env does not set", m[1])
		}
	}
	var compose composeFile
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}

	// Compose's own schema check, where a Compose is installed (Debian's
	// docker-compose needs no Docker engine for it).
	if dc, err := exec.LookPath("docker-compose"); err == nil {
		c := exec.Command(dc, "config", "-q")
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("docker-compose config: %v\n%s", err, out)
		}
	} else {
		t.Log("no docker-compose: docker-compose.yml checked by this test only")
	}

	nodes := 0
	for name, svc := range compose.Services {
		mounts := map[string]string{} // container path -> host path
		for _, v := range svc.Volumes {
			f := strings.Split(v, ":")
			if len(f) >= 2 && (strings.HasPrefix(f[0], "./") || strings.HasPrefix(f[0], "../")) {
				host := filepath.Join(dir, f[0])
				if _, err := os.Stat(host); err != nil {
					t.Errorf("service %s mounts %s, which is not there after setup.sh: %v", name, f[0], err)
				}
				mounts[f[1]] = host
			}
		}
		cfgPath, ok := mounts["/etc/iotgate/iotgate.yaml"]
		if !ok {
			continue
		}
		nodes++
		t.Run(name, func(t *testing.T) {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(cfgPath), err)
			}
			if cfg.Store.Engine != enginePostgres || cfg.Cluster.NodeID != name {
				t.Errorf("store.engine %s, cluster.node_id %q: want postgres and the service's name %s", cfg.Store.Engine, cfg.Cluster.NodeID, name)
			}
			if svc.Build == nil || svc.Environment["IOTGATE_MASTER_KEY"] == "" || svc.Environment["PGPASSWORD"] == "" {
				t.Errorf("service %s: want the image built from the repository, IOTGATE_MASTER_KEY and PGPASSWORD from .env", name)
			}
			// coap_forward is bound by the node: the service's own address.
			var nets map[string]struct {
				IPv4 string `yaml:"ipv4_address"`
			}
			if err := svc.Networks.Decode(&nets); err != nil {
				t.Fatalf("service %s networks: %v", name, err)
			}
			fwd := cfg.Cluster.Advertise[lwm2m.AdvertiseCoAPForward]
			if ip := nets["iotgate"].IPv4; ip == "" || !strings.HasPrefix(fwd, ip+":") {
				t.Errorf("cluster.advertise.coap_forward %q: want the service's fixed address %q", fwd, ip)
			}
			if len(cfg.API.Credentials) != 1 || cfg.API.Credentials[0].Token != env["IOTGATE_API_TOKEN"] {
				t.Errorf("api.credentials %+v: want the token of .env", cfg.API.Credentials)
			}
			// The certificate files, as the container sees them, load.
			for _, p := range []*string{&cfg.API.TLSCertFile, &cfg.API.TLSKeyFile, &cfg.MQTT.TLSCertFile, &cfg.MQTT.TLSKeyFile} {
				for in, host := range mounts {
					if rest, ok := strings.CutPrefix(*p, in+"/"); ok {
						*p = filepath.Join(host, rest)
					}
				}
			}
			if err := cfg.checkCertFiles(); err != nil {
				t.Errorf("the shared certificate: %v", err)
			}
		})
	}
	if nodes != 3 {
		t.Errorf("%d iotgate services, want 3", nodes)
	}
	for _, want := range []string{"postgres", "nats-1", "nats-2", "nats-3", "haproxy"} {
		if _, ok := compose.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}

	// HAProxy: the configuration parses, and each server is a node.
	cfg, err := os.ReadFile(filepath.Join(dir, "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*server (\S+) (\S+):\d+`).FindAllSubmatch(cfg, -1) {
		if _, ok := compose.Services[string(m[2])]; !ok {
			t.Errorf("haproxy.cfg: server %s goes to %s, no service of docker-compose.yml", m[1], m[2])
		}
	}
	if haproxy, err := exec.LookPath("haproxy"); err == nil {
		if out, err := exec.Command(haproxy, "-c", "-f", filepath.Join(dir, "haproxy.cfg")).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	} else {
		t.Log("no haproxy: haproxy.cfg not parsed")
	}
}
