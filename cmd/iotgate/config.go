package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/registry"
	"gopkg.in/yaml.v3"
)

// Config is the whole configuration; configs/iotgate.yaml documents every
// key with its default.
type Config struct {
	DataDir string `yaml:"data_dir"`
	// MasterKey seals secrets at rest (64 hex characters). Empty: taken
	// from $IOTGATE_MASTER_KEY, else generated into data_dir/master.key.
	MasterKey string `yaml:"master_key"`
	LogLevel  string `yaml:"log_level"`
	// LogFormat is text (key=value lines) or json (a JSON object a line).
	LogFormat string        `yaml:"log_format"`
	API       APIConfig     `yaml:"api"`
	CoAP      CoAPConfig    `yaml:"coap"`
	MQTT      MQTTConfig    `yaml:"mqtt"`
	Registry  RegConfig     `yaml:"registry"`
	Events    EventsConfig  `yaml:"events"`
	Limits    LimitsConfig  `yaml:"limits"`
	Store     StoreConfig   `yaml:"store"`
	Cluster   ClusterConfig `yaml:"cluster"`
	Metrics   MetricsConfig `yaml:"metrics"`
	// Activation makes the node an activation centre or a region of one.
	Activation ActivationConfig `yaml:"activation"`

	// TLSReloadInterval is how often the TLS certificate files (MQTTS,
	// API) are checked for changes and reloaded; 0 disables polling
	// (SIGHUP still reloads).
	TLSReloadInterval time.Duration `yaml:"tls_reload_interval"`

	// DebugListen serves /debug/vars and /debug/pprof, unauthenticated
	// (debug.go); empty, the default, disables it.
	DebugListen string `yaml:"debug_listen"`

	// Forwarding runs routing rules' actions (forwarding.go).
	Forwarding ForwardingConfig `yaml:"forwarding"`

	// BatchTasks bounds and paces batch tasks (batchtasks.go).
	BatchTasks BatchTasksConfig `yaml:"batch_tasks"`
}

// Storage engines (store.engine).
const (
	engineBadger   = "badger"
	enginePostgres = "postgres"
)

// StoreConfig configures the storage engine.
type StoreConfig struct {
	// Engine is badger (embedded, in data_dir/db; one node) or postgres
	// (shared by the nodes of a cluster).
	Engine   string         `yaml:"engine"`
	Postgres PostgresConfig `yaml:"postgres"`
	// MinFreeBytes (Badger only): below this much free space in
	// data_dir's filesystem, writes are refused (503) so the engine never
	// faults on a full disk.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// BallastBytes (Badger only): the file kept beside the database and
	// deleted by a start on a full disk, so the database can open.
	BallastBytes int64 `yaml:"ballast_bytes"`

	// readOnly (Badger only) opens the store to read it (iotgate check).
	readOnly bool
}

// PostgresConfig configures the PostgreSQL engine (registry/kv/pgkv).
type PostgresConfig struct {
	// URL is the connection string, in pgx syntax.
	URL string `yaml:"url"`
	// MaxConns bounds the connection pool.
	MaxConns int32 `yaml:"max_conns"`
	// StartTimeout bounds how long a start keeps retrying a database
	// that does not answer before iotgate exits.
	StartTimeout time.Duration `yaml:"start_timeout"`
}

// ClusterConfig names this node in a cluster of nodes sharing one
// PostgreSQL store and one NATS bus; the zero value is a single node.
type ClusterConfig struct {
	// NodeID names this node, unique in the cluster ([a-z0-9-]{1,32});
	// empty: a single node.
	NodeID string `yaml:"node_id"`
	// NATSURL is the bus the nodes share (nats.go syntax, comma-separated
	// servers).
	NATSURL string `yaml:"nats_url"`
	// Advertise gives, per listener, the address the other nodes use to
	// reach this one (e.g. coap_forward: "127.0.0.1:7001").
	Advertise map[string]string `yaml:"advertise"`
}

// clustered reports whether this node is one of a cluster.
func (c ClusterConfig) clustered() bool { return c.NodeID != "" }

// APIConfig configures the REST API listeners.
type APIConfig struct {
	// Listen (HTTP) and TLSListen (HTTPS) are TCP addresses; empty
	// disables one, and one is required.
	Listen    string `yaml:"listen"`
	TLSListen string `yaml:"tls_listen"`
	// TLSCertFile and TLSKeyFile are the HTTPS server certificate (PEM,
	// chain first) and key. Empty: the generated certificate under
	// data_dir/tls (the one MQTTS uses when it has none either).
	TLSCertFile string       `yaml:"tls_cert_file"`
	TLSKeyFile  string       `yaml:"tls_key_file"`
	Credentials []Credential `yaml:"credentials"`
	// MaxClockSkew bounds how far X-Sdk-Date may be from our clock.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
}

// Credential is one tenant's API credential.
type Credential struct {
	ProjectID string `yaml:"project_id" json:"project_id"`
	AccessKey string `yaml:"access_key" json:"access_key"`
	SecretKey string `yaml:"secret_key" json:"secret_key"`
	Token     string `yaml:"token" json:"token"`
}

// CoAPConfig configures the LwM2M listeners.
type CoAPConfig struct {
	// Listen (CoAP, NoSec) and DTLSListen (CoAP over DTLS-PSK) are UDP
	// addresses; empty disables one.
	Listen     string `yaml:"listen"`
	DTLSListen string `yaml:"dtls_listen"`
	// LifetimeMin and LifetimeMax bound the registration lifetime (lt) a
	// client may ask for; outside them Register/Update get 4.00.
	LifetimeMin time.Duration `yaml:"lifetime_min"`
	LifetimeMax time.Duration `yaml:"lifetime_max"`
	// QueueWindow is how long a queue-mode (UQ) client stays reachable
	// after it last sent something; later downlink waits for its next
	// uplink.
	QueueWindow time.Duration `yaml:"queue_window"`
	// RequestTimeout bounds one request to a client, retransmissions
	// included; an asynchronous command not answered in it is TIMEOUT.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// HandshakeTimeout bounds one DTLS handshake; MaxHandshakes how many
	// run at once.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	MaxHandshakes    int           `yaml:"max_handshakes"`
	// MaxUnverified bounds the handshakes whose client has not echoed its
	// HelloVerifyRequest cookie yet; CookieWait how long one may wait.
	MaxUnverified int           `yaml:"max_unverified_handshakes"`
	CookieWait    time.Duration `yaml:"cookie_wait"`
	// LogPerSecond and LogBurst bound the info lines of refused Registers
	// and failed DTLS handshakes (a flood cannot fill the disk).
	LogPerSecond float64 `yaml:"refusal_logs_per_second"`
	LogBurst     int     `yaml:"refusal_log_burst"`
	// IdleTimeout closes a connection (DTLS session) that carries no
	// registration after this much silence.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// SweepInterval is how often expired registrations are removed.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// SaveInterval is how often changed registrations are written to the
	// store, where they survive a restart (and are shared by a cluster's
	// nodes); a kill -9 loses the changes of at most this long.
	SaveInterval time.Duration `yaml:"save_interval"`
	// Firmware configures firmware upgrades over object 5.
	Firmware FirmwareConfig `yaml:"firmware"`
}

// FirmwareConfig configures firmware delivery (LwM2M object 5).
type FirmwareConfig struct {
	// MaxDownloads bounds the devices of one firmware upgrade task (a
	// batch task, or a job started without one) downloading at once,
	// counted across every node sharing the store; each task has its own.
	MaxDownloads int `yaml:"max_downloads"`
	// Host is the host of the Package URIs written to devices; empty
	// takes the listener's, which must then be a specific address.
	Host string `yaml:"host"`
	// HTTPURL is the base URL of the API listener as devices reach it
	// (http:// or https://, no query): a device that downloads by
	// HTTP(S) only is given {http_url}/fw/{token}. Empty: such a device's
	// item fails.
	HTTPURL string `yaml:"http_url"`
	// DownloadTimeout bounds one device's download; UpdateTimeout its
	// wait for the Update Result after the Update.
	DownloadTimeout time.Duration `yaml:"download_timeout"`
	UpdateTimeout   time.Duration `yaml:"update_timeout"`
}

// MQTTConfig configures the MQTT listeners.
type MQTTConfig struct {
	// Listen and TLSListen are the MQTT and MQTTS addresses; empty
	// disables one.
	Listen    string `yaml:"listen"`
	TLSListen string `yaml:"tls_listen"`
	// TLSCertFile and TLSKeyFile are the MQTTS server certificate (PEM,
	// chain first) and key. Empty: a CA and a certificate for localhost
	// are generated into data_dir/tls and reused.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TimestampSkew is how far a sign_type 1 ClientId timestamp may be
	// from the platform's clock.
	TimestampSkew time.Duration `yaml:"timestamp_skew"`
}

// RegConfig tunes the registry.
type RegConfig struct {
	// SweepInterval is how often unconnected devices past their timeout
	// are deleted.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// CacheEntries bounds the in-memory cache of device records used by
	// authentication lookups.
	CacheEntries int `yaml:"cache_entries"`
	// CacheMaxAge bounds how long a cached record is trusted without a
	// store read.
	CacheMaxAge time.Duration `yaml:"cache_max_age"`
	// Quotas; over quota a request is refused and nothing is written.
	MaxDevicesPerProduct    int64 `yaml:"max_devices_per_product"`
	MaxSubDevicesPerGateway int64 `yaml:"max_sub_devices_per_gateway"`
	MaxClientIDsPerDevice   int   `yaml:"max_client_ids_per_device"`
	MaxSubDevicesPerRequest int   `yaml:"max_sub_devices_per_request"`
	// Static device groups' quotas (IoTDA's limits by default).
	MaxDeviceGroupsPerProject int64 `yaml:"max_device_groups_per_project"`
	MaxDevicesPerGroup        int64 `yaml:"max_devices_per_group"`
	MaxGroupsPerDevice        int   `yaml:"max_groups_per_device"`
	MaxGroupDepth             int   `yaml:"max_group_depth"`
}

// EventsConfig bounds the durable event stream (GET .../events and
// event consumers): events are kept until every consumer of their project
// has acknowledged them, but never longer than Retention nor beyond the
// last MaxEvents.
type EventsConfig struct {
	Retention time.Duration `yaml:"retention"`
	MaxEvents uint64        `yaml:"max_events"`
	// OfflineGrace delays OFFLINE events; a device back within it is
	// never reported offline.
	OfflineGrace time.Duration `yaml:"offline_grace"`
}

// defaultCoAPConfig is the LwM2M server's defaults (package lwm2m's).
func defaultCoAPConfig() CoAPConfig {
	return CoAPConfig{Listen: ":5683", DTLSListen: ":5684",
		LifetimeMin: lwm2m.DefaultMinLifetime, LifetimeMax: lwm2m.DefaultMaxLifetime,
		QueueWindow: lwm2m.DefaultQueueWindow, RequestTimeout: lwm2m.DefaultRequestTimeout,
		HandshakeTimeout: lwm2m.DefaultHandshakeTimeout, MaxHandshakes: lwm2m.DefaultMaxHandshakes,
		MaxUnverified: lwm2m.DefaultMaxUnverified, CookieWait: lwm2m.DefaultCookieWait,
		LogPerSecond: 10, LogBurst: 50,
		IdleTimeout: lwm2m.DefaultIdleTimeout, SweepInterval: lwm2m.DefaultSweepInterval,
		SaveInterval: lwm2m.DefaultSaveInterval,
		Firmware: FirmwareConfig{MaxDownloads: lwm2m.DefaultFirmwareDownloads,
			DownloadTimeout: lwm2m.DefaultFirmwareDownloadTimeout, UpdateTimeout: lwm2m.DefaultFirmwareUpdateTimeout}}
}

func defaultConfig() Config {
	return Config{
		DataDir:   "./data",
		LogLevel:  "info",
		LogFormat: logText,
		API:       APIConfig{Listen: ":8080", TLSListen: ":8443", MaxClockSkew: 15 * time.Minute},
		CoAP:      defaultCoAPConfig(),
		MQTT:      MQTTConfig{Listen: ":1883", TLSListen: ":8883", TimestampSkew: time.Hour},
		Registry: RegConfig{SweepInterval: time.Second, CacheEntries: 1 << 22, CacheMaxAge: 10 * time.Minute,
			MaxDevicesPerProduct: 500_000, MaxSubDevicesPerGateway: 1_500, MaxClientIDsPerDevice: 5, MaxSubDevicesPerRequest: 30,
			MaxDeviceGroupsPerProject: 1_000, MaxDevicesPerGroup: 20_000, MaxGroupsPerDevice: 10, MaxGroupDepth: 5},
		Store: StoreConfig{Engine: engineBadger, MinFreeBytes: 256 << 20, BallastBytes: 64 << 20,
			Postgres: PostgresConfig{MaxConns: 32, StartTimeout: time.Minute}},
		Limits:            defaultLimits(),
		Activation:        defaultActivationConfig(),
		TLSReloadInterval: time.Minute,
		Events: EventsConfig{Retention: registry.DefaultEventRetention, MaxEvents: registry.DefaultMaxEvents,
			OfflineGrace: 30 * time.Second},
		Forwarding: defaultForwarding(),
		BatchTasks: defaultBatchTasks(),
	}
}

// loadConfig reads path over the defaults; an empty path means defaults.
// Unknown keys are errors, so a typo does not silently fall back; every
// error names the file, and a key's error its path and line.
func loadConfig(path string) (Config, error) {
	c := defaultConfig()
	if path == "" {
		if err := c.validate(); err != nil {
			return c, &configError{path, err}
		}
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return c, &configError{path, err}
	}
	if err := checkKeys(&doc, reflect.TypeFor[Config](), ""); err != nil {
		return c, &configError{path, err}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // checkKeys found none unknown; kept as the decoder's own guard
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, &configError{path, err}
	}
	if err := c.validate(); err != nil {
		return c, &configError{path, err}
	}
	return c, nil
}

// configError is an error in the configuration file path: one line that
// names the file and what is wrong.
type configError struct {
	path string
	err  error
}

func (e *configError) Error() string {
	path := e.path
	if path == "" {
		path = "(built-in defaults)"
	}
	return "config " + path + ": " + strings.TrimPrefix(e.err.Error(), "config: ")
}

func (e *configError) Unwrap() error { return e.err }

func (c *Config) validate() error {
	if c.DataDir == "" {
		return errors.New("config: data_dir is required")
	}
	if c.MasterKey != "" {
		if _, err := registry.ParseMasterKey(c.MasterKey); err != nil {
			return fmt.Errorf("config: master_key: %w", err)
		}
	}
	if c.API.Listen == "" && c.API.TLSListen == "" {
		return errors.New("config: api.listen or api.tls_listen is required")
	}
	if (c.API.TLSCertFile == "") != (c.API.TLSKeyFile == "") {
		return errors.New("config: api.tls_cert_file and api.tls_key_file go together")
	}
	if _, err := newLogger(c, io.Discard); err != nil {
		return err
	}
	if c.TLSReloadInterval < 0 {
		return errors.New("config: tls_reload_interval must not be negative")
	}
	if err := c.Limits.API.validate(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, cr := range c.API.Credentials {
		if cr.ProjectID == "" {
			return fmt.Errorf("config: api.credentials[%d].project_id is required", i)
		}
		if (cr.AccessKey == "") != (cr.SecretKey == "") {
			return fmt.Errorf("config: api.credentials[%d]: access_key and secret_key go together", i)
		}
		if cr.AccessKey == "" && cr.Token == "" {
			return fmt.Errorf("config: api.credentials[%d]: needs access_key/secret_key or token", i)
		}
		for _, k := range []string{"ak:" + cr.AccessKey, "tok:" + cr.Token} {
			if len(k) > 4 && seen[k] {
				return fmt.Errorf("config: api.credentials[%d]: access key or token used twice", i)
			}
			seen[k] = true
		}
	}
	if c.API.MaxClockSkew <= 0 {
		c.API.MaxClockSkew = 15 * time.Minute
	}
	if (c.MQTT.TLSCertFile == "") != (c.MQTT.TLSKeyFile == "") {
		return errors.New("config: mqtt.tls_cert_file and mqtt.tls_key_file go together")
	}
	if c.MQTT.TimestampSkew <= 0 {
		c.MQTT.TimestampSkew = time.Hour
	}
	if c.CoAP.LifetimeMin > c.CoAP.LifetimeMax && c.CoAP.LifetimeMax > 0 {
		return errors.New("config: coap.lifetime_min exceeds coap.lifetime_max")
	}
	if c.CoAP.SaveInterval < 0 {
		return errors.New("config: coap.save_interval must not be negative")
	}
	if c.CoAP.MaxHandshakes < 0 {
		return errors.New("config: coap.max_handshakes must not be negative")
	}
	if err := lwm2m.ValidFirmwareHTTPURL(c.CoAP.Firmware.HTTPURL); err != nil {
		return fmt.Errorf("config: coap.firmware.http_url: %w", err)
	}
	if c.Registry.SweepInterval <= 0 {
		c.Registry.SweepInterval = time.Second
	}
	if c.Events.Retention <= 0 {
		return errors.New("config: events.retention must be positive")
	}
	if c.Events.MaxEvents == 0 {
		return errors.New("config: events.max_events must be positive")
	}
	if c.Events.OfflineGrace < 0 {
		return errors.New("config: events.offline_grace must not be negative")
	}
	if err := c.Forwarding.validate(); err != nil {
		return err
	}
	if err := c.BatchTasks.validate(); err != nil {
		return err
	}
	if err := c.validateStore(); err != nil {
		return err
	}
	if err := c.Activation.validate(); err != nil {
		return err
	}
	return c.Limits.validate()
}

// nodeIDPattern is what cluster.node_id may be: it names the node in
// store keys, bus subjects and DTLS connection ids.
var nodeIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// advertiseName is what a cluster.advertise key may be.
var advertiseName = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// validateStore checks store.* and cluster.*: a cluster needs a shared
// store (PostgreSQL) and a bus.
func (c *Config) validateStore() error {
	s, cl := &c.Store, &c.Cluster
	switch s.Engine {
	case "":
		s.Engine = engineBadger
	case engineBadger, enginePostgres:
	default:
		return fmt.Errorf("config: store.engine: unknown engine %q (badger or postgres)", s.Engine)
	}
	if s.Engine == enginePostgres && s.Postgres.URL == "" {
		return errors.New("config: store.postgres.url is required when store.engine is postgres")
	}
	if s.Postgres.MaxConns < 0 {
		return errors.New("config: store.postgres.max_conns must not be negative")
	}
	if s.Postgres.StartTimeout <= 0 {
		return errors.New("config: store.postgres.start_timeout must be positive")
	}
	if cl.NodeID != "" && !nodeIDPattern.MatchString(cl.NodeID) {
		return fmt.Errorf("config: cluster.node_id %q: must be 1 to 32 characters of a-z, 0-9 and -", cl.NodeID)
	}
	switch {
	case cl.NodeID != "" && s.Engine != enginePostgres:
		return errors.New("config: cluster.node_id needs store.engine postgres: the nodes of a cluster share one store")
	case cl.NATSURL != "" && cl.NodeID == "":
		return errors.New("config: cluster.nats_url needs cluster.node_id (a single node has no bus)")
	case cl.NodeID != "" && cl.NATSURL == "":
		return errors.New("config: cluster.node_id needs cluster.nats_url: the nodes of a cluster share a NATS bus")
	case len(cl.Advertise) > 0 && cl.NodeID == "":
		return errors.New("config: cluster.advertise needs cluster.node_id")
	}
	for name, addr := range cl.Advertise {
		if !advertiseName.MatchString(name) {
			return fmt.Errorf("config: cluster.advertise: listener name %q must be 1 to 32 characters of a-z, 0-9 and _", name)
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return fmt.Errorf("config: cluster.advertise.%s: %q is not a host:port address", name, addr)
		}
	}
	if a, ok := cl.Advertise[lwm2m.AdvertiseCoAPForward]; ok {
		// The other nodes send to it and know this node's frames by it
		// as their source: one literal address, bound as advertised.
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return fmt.Errorf("config: cluster.advertise.%s: %q must be an IP address and a port (no host name, no wildcard): this node binds it, and the other nodes send to it and accept frames only from it", lwm2m.AdvertiseCoAPForward, a)
		}
	}
	return nil
}
