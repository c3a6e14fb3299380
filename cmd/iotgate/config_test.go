package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The documented example must be exactly the defaults, so every knob is
// documented with its real default value.
func TestExampleConfigIsDefaults(t *testing.T) {
	// Decode over a zero Config, not over the defaults: a key missing from
	// the example would otherwise go unnoticed.
	f, err := os.Open("../../configs/iotgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got Config
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	if err := want.validate(); err != nil {
		t.Fatal(err)
	}
	if len(got.API.Credentials) == 0 {
		got.API.Credentials = nil // "credentials: []" documents the empty default
	}
	if len(got.Cluster.Advertise) == 0 {
		got.Cluster.Advertise = nil // "advertise: {}" likewise
	}
	if len(got.Activation.Regions) == 0 {
		got.Activation.Regions = nil // "regions: []" likewise
	}
	if len(got.Activation.Rules) == 0 {
		got.Activation.Rules = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("configs/iotgate.yaml differs from the built-in defaults:\n got %+v\nwant %+v", got, want)
	}
}

// pgStore is a valid PostgreSQL store block.
const pgStore = "store:\n  engine: postgres\n  postgres:\n    url: postgres://iotgate@127.0.0.1/iotgate\n"

// Valid store and cluster settings load as written.
func TestConfigStoreAndCluster(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		engine  string
		cluster ClusterConfig
	}{
		{"", engineBadger, ClusterConfig{}},
		{"store:\n  engine: \"\"\n", engineBadger, ClusterConfig{}},
		{pgStore, enginePostgres, ClusterConfig{}},
		{pgStore + "cluster:\n  node_id: node-1\n  nats_url: nats://127.0.0.1:4222\n  advertise:\n    coap_forward: 127.0.0.1:7001\n",
			enginePostgres, ClusterConfig{NodeID: "node-1", NATSURL: "nats://127.0.0.1:4222",
				Advertise: map[string]string{"coap_forward": "127.0.0.1:7001"}}},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path)
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if c.Store.Engine != tc.engine || !reflect.DeepEqual(c.Cluster, tc.cluster) {
			t.Errorf("%q: engine %q cluster %+v, want %q %+v", tc.yaml, c.Store.Engine, c.Cluster, tc.engine, tc.cluster)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"data_dir: x\nunknown_key: 1\n", "unknown_key"},
		{"api:\n  listen: \"\"\n  tls_listen: \"\"\n", "api.listen or api.tls_listen"},
		{"api:\n  tls_cert_file: a.pem\n", "go together"},
		{"tls_reload_interval: -1s\n", "tls_reload_interval"},
		{"log_format: xml\n", `log_format: "xml" is not text or json`},
		{"log_level: loud\n", "log_level"},
		{"limits:\n  api:\n    rate: -1\n", "must not be negative"},
		{"limits:\n  api:\n    rate: 10\n    burst: 0\n", "bursts must be at least 1"},
		{"limits:\n  api:\n    max_body_bytes: 0\n", "must be positive"},
		{"limits:\n  api:\n    read_header_timeout: 0s\n", "timeouts must be positive"},
		{"limits:\n  api:\n    max_conns_per_address: -1\n", "max_conns_per_address"},
		{"api:\n  credentials:\n    - access_key: a\n      secret_key: b\n", "project_id"},
		{"api:\n  credentials:\n    - project_id: p\n      access_key: a\n", "go together"},
		{"api:\n  credentials:\n    - project_id: p\n", "needs"},
		{"coap:\n  firmware:\n    http_url: iot.example.com:8080\n", ": coap.firmware.http_url: "},
		{"coap:\n  firmware:\n    http_url: ftp://iot.example.com\n", ": coap.firmware.http_url: "},
		{"coap:\n  firmware:\n    http_url: https://iot.example.com/?k=v\n", "coap.firmware.http_url: \"https://iot.example.com/?k=v\": no query"},
		{"coap:\n  firmware:\n    http_url: /fw\n", ": coap.firmware.http_url: "},
		{"events:\n  retention: 0s\n", "events.retention"},
		{"events:\n  max_events: 0\n", "events.max_events"},
		{"forwarding:\n  poll: 0s\n", "forwarding.reload, poll"},
		{"forwarding:\n  retry_max: 100ms\n", "forwarding.retry_max must be at least retry_base"},
		{"forwarding:\n  lanes: 0\n", "forwarding.lanes"},
		{"forwarding:\n  drain_rate: -1\n", "forwarding.drain_rate"},
		{"forwarding:\n  backlog:\n    max_size: 0\n", "forwarding.backlog.max_age, max_size and check must be positive"},
		{"forwarding:\n  backlog:\n    channels:\n      SMTP: {max_age: 1h}\n", `unknown channel "SMTP"`},
		{"forwarding:\n  backlog:\n    channels:\n      HTTP_FORWARDING: {max_age: -1h}\n", "forwarding.backlog.channels.HTTP_FORWARDING"},
		{"store:\n  engine: sqlite\n", `store.engine: unknown engine "sqlite"`},
		{"store:\n  engine: postgres\n", "store.postgres.url is required"},
		{"store:\n  postgres:\n    max_conns: -1\n", "store.postgres.max_conns"},
		{"store:\n  postgres:\n    start_timeout: 0s\n", "store.postgres.start_timeout"},
		{pgStore + "cluster:\n  node_id: Node1\n  nats_url: nats://x\n", `cluster.node_id "Node1"`},
		{pgStore + "cluster:\n  node_id: n_1\n  nats_url: nats://x\n", "cluster.node_id"},
		{pgStore + "cluster:\n  node_id: " + strings.Repeat("a", 33) + "\n  nats_url: nats://x\n", "1 to 32"},
		{pgStore + "cluster:\n  nats_url: nats://x\n", "cluster.nats_url needs cluster.node_id"},
		{pgStore + "cluster:\n  node_id: n1\n", "cluster.node_id needs cluster.nats_url"},
		{"cluster:\n  node_id: n1\n  nats_url: nats://x\n", "needs store.engine postgres"},
		{pgStore + "cluster:\n  advertise:\n    coap_forward: 127.0.0.1:7001\n", "cluster.advertise needs cluster.node_id"},
		{pgStore + "cluster:\n  node_id: n1\n  nats_url: nats://x\n  advertise:\n    coap_forward: nowhere\n", "cluster.advertise.coap_forward"},
		{pgStore + "cluster:\n  node_id: n1\n  nats_url: nats://x\n  advertise:\n    Bad-Name: 127.0.0.1:1\n", "listener name"},
		{pgStore + "cluster:\n  node_id: n1\n  nats_url: nats://x\n  advertise:\n    coap_forward: localhost:7001\n", "must be an IP address and a port"},
		{pgStore + "cluster:\n  node_id: n1\n  nats_url: nats://x\n  advertise:\n    coap_forward: 0.0.0.0:7001\n", "no wildcard"},
		{pgStore + "cluster:\n  node_id: n1\n  nats_url: nats://x\n  advertise:\n    coap_forward: 127.0.0.1:0\n", "cluster.advertise.coap_forward"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want error containing %q, got %v", tc.yaml, tc.want, err)
		}
	}
}

// activation: blocks load or are refused with a message naming the key.
func TestConfigActivation(t *testing.T) {
	const region = "    - id: eu\n      url: http://127.0.0.1:9001\n      token: 0123456789abcdef\n      mqtt_host: 127.0.0.1\n      mqtt_port: 1883\n"
	centre := "activation:\n  role: centre\n  listen: 127.0.0.1:0\n  default_region: eu\n  regions:\n" + region
	tests := []struct {
		name, yaml, err string
	}{
		{"off", "activation:\n  role: \"\"\n", ""},
		{"region", "activation:\n  role: region\n  listen: 127.0.0.1:0\n  token: 0123456789abcdef\n", ""},
		{"centre", centre + "  rules:\n    - source_cidr: 10.0.0.0/8\n      region: eu\n    - product_key: pk\n      region: eu\n", ""},
		{"unknown role", "activation:\n  role: hub\n  listen: :1\n", "activation.role"},
		{"no listener", "activation:\n  role: region\n  token: 0123456789abcdef\n", "activation.listen"},
		{"short region token", "activation:\n  role: region\n  listen: :1\n  token: short\n", "activation.token"},
		{"no regions", "activation:\n  role: centre\n  listen: :1\n  default_region: eu\n", "activation.regions"},
		{"no default", strings.Replace(centre, "  default_region: eu\n", "", 1), "default region"},
		{"bad cidr", centre + "  rules:\n    - source_cidr: 10.0.0.0/33\n      region: eu\n", "source_cidr"},
		{"unknown rule region", centre + "  rules:\n    - product_key: pk\n      region: us\n", "not a configured region"},
		{"match-all rule", centre + "  rules:\n    - region: eu\n", "source range or a product key"},
		{"IPv6 host", strings.Replace(centre, "mqtt_host: 127.0.0.1", "mqtt_host: \"::1\"", 1), "mqtt_host"},
		{"long host", strings.Replace(centre, "mqtt_host: 127.0.0.1", "mqtt_host: "+strings.Repeat("h", 64), 1), "mqtt_host"},
		{"bad port", strings.Replace(centre, "mqtt_port: 1883", "mqtt_port: 0", 1), "mqtt_port"},
		{"bad url", strings.Replace(centre, "http://127.0.0.1:9001", "ftp://x", 1), "url"},
		{"duplicate region", centre + strings.Replace(region, "    - id: eu", "    - id: eu", 1), "twice"},
		{"lwm2m uris", strings.Replace(centre, "      mqtt_port: 1883\n", "      mqtt_port: 1883\n      lwm2m_uri: coap://h:5683\n      lwm2m_secure_uri: coaps://h:5684\n", 1) + "  bootstrap_listen: 127.0.0.1:0\n", ""},
		{"lwm2m bootstrap dtls", centre + "  bootstrap_dtls_listen: 127.0.0.1:0\n", ""},
		{"lwm2m bootstrap lifetime", centre + "  bootstrap_lifetime: 20s\n", ""},
		{"lwm2m bootstrap lifetime below a second", centre + "  bootstrap_lifetime: 500ms\n", "bootstrap_lifetime"},
		{"lwm2m uri scheme", strings.Replace(centre, "      mqtt_port: 1883\n", "      mqtt_port: 1883\n      lwm2m_secure_uri: coap://h:5684\n", 1), "lwm2m_secure_uri"},
		{"lwm2m uri port", strings.Replace(centre, "      mqtt_port: 1883\n", "      mqtt_port: 1883\n      lwm2m_uri: coap://h\n", 1), "lwm2m_uri"},
		{"region lwm2m bootstrap", "activation:\n  role: region\n  listen: :1\n  token: 0123456789abcdef\n  bootstrap_listen: :5683\n", "centre's"},
		{"region lwm2m bootstrap dtls", "activation:\n  role: region\n  listen: :1\n  token: 0123456789abcdef\n  bootstrap_dtls_listen: :5684\n", "centre's"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte("data_dir: /tmp/x\n"+tt.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadConfig(path)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: %v, want an error naming %q", tt.name, err, tt.err)
		}
	}
}

func TestConfigActivationMQTT(t *testing.T) {
	region := "activation:\n  role: region\n  listen: :1\n  token: 0123456789abcdef\n  mqtt_listen: :2\n"
	centre := "activation:\n  role: centre\n  listen: :1\n  mqtt_listen: :2\n  default_region: eu\n  regions:\n" +
		"    - {id: eu, url: \"http://127.0.0.1:9\", token: 0123456789abcdef, mqtt_host: h, mqtt_port: 1, address: %s}\n"
	for _, tt := range []struct {
		name, yaml, err string
	}{
		{"region bootstrap listener", region, "centre's"},
		{"centre", fmt.Sprintf(centre, `"h:8883"`), ""},
		{"bad address", fmt.Sprintf(centre, `"h"`), "address"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte("data_dir: /tmp/x\n"+tt.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadConfig(path)
		if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
	}
}
