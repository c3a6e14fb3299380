package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/iotgate/iotgate/activation"
	"github.com/iotgate/iotgate/fdbudget"
	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/registry/regions"
)

// Activation roles (activation.role).
const (
	roleRegion = "region"
	roleCentre = "centre"
)

// ActivationConfig makes this node an activation centre, or a region
// that one assigns devices to (README, "Activation centre and regions").
type ActivationConfig struct {
	// Role is "" (neither), "region" (serve the centre's requests on
	// listen; accept securemode=-1 iotTokens over MQTT) or "centre" (run
	// only the centre: device endpoints and admin action on listen, a
	// directory in the store; no API, MQTT or CoAP listener).
	Role string `yaml:"role"`
	// Listen (HTTP) and TLSListen (HTTPS) serve the role's endpoints.
	Listen    string `yaml:"listen"`
	TLSListen string `yaml:"tls_listen"`
	// TLSCertFile and TLSKeyFile are TLSListen's certificate; empty: the
	// generated one under data_dir/tls.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// MQTTListen and MQTTTLSListen (centre) serve Huawei IoTDP-style
	// bootstrap over MQTT and MQTTS (TLSListen's certificate); empty
	// disables one.
	MQTTListen    string `yaml:"mqtt_listen"`
	MQTTTLSListen string `yaml:"mqtt_tls_listen"`
	// BootstrapListen and BootstrapDTLSListen are the centre's LwM2M
	// Bootstrap server over CoAP NoSec and over DTLS-PSK (UDP); empty
	// disables one. NoSec writes only NoSec accounts; a PSK is written
	// over DTLS only.
	BootstrapListen     string `yaml:"bootstrap_listen"`
	BootstrapDTLSListen string `yaml:"bootstrap_dtls_listen"`
	// BootstrapLifetime is the registration lifetime the LwM2M bootstrap
	// writes (/1/0/1): a client updates its registration within it, which
	// is also when a moved client that ignores the region's triggers
	// learns it must bootstrap again.
	BootstrapLifetime time.Duration `yaml:"bootstrap_lifetime"`
	// Token (region) is the bearer token the centre must present.
	Token string `yaml:"token"`
	// TokenTTL (region) is how long an iotToken lets its device connect.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// Regions (centre) are the regions devices are assigned to.
	Regions []ActivationRegion `yaml:"regions"`
	// Rules (centre) assign a device on first contact: the first that
	// matches, else DefaultRegion.
	Rules         []ActivationRule `yaml:"rules"`
	DefaultRegion string           `yaml:"default_region"`
	// MoveGrace (centre): how long a moved device may stay connected in
	// its old region before its copy there is deleted anyway.
	MoveGrace time.Duration `yaml:"move_grace"`
	// SweepInterval (centre): how often moves under way are finished.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// RegionTimeout (centre) bounds one request to a region.
	RegionTimeout time.Duration `yaml:"region_timeout"`
}

// ActivationRegion is one region as the centre knows it.
type ActivationRegion struct {
	ID string `yaml:"id"`
	// URL is the region's activation endpoint (its activation.listen or
	// tls_listen), Token its activation.token; CAFile, if set, is the
	// PEM CA its HTTPS certificate must chain to.
	URL    string `yaml:"url"`
	Token  string `yaml:"token"`
	CAFile string `yaml:"ca_file"`
	// MQTTHost and MQTTPort are what Alibaba devices are told to
	// connect to; Address ("host:port", e.g. the region's MQTTS) what
	// Huawei-style devices are (empty: mqtt_host:mqtt_port).
	MQTTHost string `yaml:"mqtt_host"`
	MQTTPort int    `yaml:"mqtt_port"`
	Address  string `yaml:"address"`
	// LwM2MURI and LwM2MSecureURI are the region's LwM2M server URIs
	// (coap://host:5683, coaps://host:5684) the LwM2M bootstrap writes
	// for NoSec and PSK devices; empty: none of that kind.
	LwM2MURI       string `yaml:"lwm2m_uri"`
	LwM2MSecureURI string `yaml:"lwm2m_secure_uri"`
}

// ActivationRule assigns the devices it matches to Region; a rule
// gives a source range, a product key or both.
type ActivationRule struct {
	SourceCIDR string `yaml:"source_cidr"`
	ProductKey string `yaml:"product_key"`
	Region     string `yaml:"region"`
}

func defaultActivationConfig() ActivationConfig {
	return ActivationConfig{TokenTTL: regions.DefaultTokenTTL, MoveGrace: regions.DefaultMoveGrace,
		SweepInterval: 5 * time.Second, RegionTimeout: 10 * time.Second, BootstrapLifetime: activation.DefaultBootstrapLifetime}
}

var regionIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// minActivationToken is the shortest bearer token accepted.
const minActivationToken = 16

func (c *ActivationConfig) validate() error {
	switch c.Role {
	case "":
		return nil
	case roleRegion, roleCentre:
	default:
		return fmt.Errorf("config: activation.role %q: want region or centre (or empty)", c.Role)
	}
	if c.Listen == "" && c.TLSListen == "" {
		return errors.New("config: activation.listen or activation.tls_listen is required with activation.role")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("config: activation.tls_cert_file and activation.tls_key_file go together")
	}
	if c.TokenTTL <= 0 || c.MoveGrace <= 0 || c.SweepInterval <= 0 || c.RegionTimeout <= 0 {
		return errors.New("config: activation.token_ttl, move_grace, sweep_interval and region_timeout must be positive")
	}
	if c.BootstrapLifetime < time.Second || c.BootstrapLifetime%time.Second != 0 {
		return fmt.Errorf("config: activation.bootstrap_lifetime %v: a whole number of seconds, at least 1s (LwM2M lifetimes are seconds)", c.BootstrapLifetime)
	}
	if c.Role == roleRegion {
		if c.MQTTListen != "" || c.MQTTTLSListen != "" || c.BootstrapListen != "" || c.BootstrapDTLSListen != "" {
			return errors.New("config: activation.mqtt_listen, mqtt_tls_listen, bootstrap_listen and bootstrap_dtls_listen are the centre's")
		}
		if len(c.Token) < minActivationToken {
			return fmt.Errorf("config: activation.token: a region needs a token of at least %d characters", minActivationToken)
		}
		return nil
	}
	if len(c.Regions) == 0 {
		return errors.New("config: activation.regions: a centre needs at least one region")
	}
	for i, r := range c.Regions {
		where := fmt.Sprintf("config: activation.regions[%d]", i)
		if !regionIDPattern.MatchString(r.ID) {
			return fmt.Errorf("%s.id %q: 1 to 32 characters of a-z, 0-9 and -", where, r.ID)
		}
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.url %q: want http(s)://host:port", where, r.URL)
		}
		if len(r.Token) < minActivationToken {
			return fmt.Errorf("%s.token: at least %d characters", where, minActivationToken)
		}
		// iotkit 3.0 copies the host into 64 bytes with its NUL, and
		// finds JSON keys by the ':' before them (so no IPv6 literal).
		if r.MQTTHost == "" || len(r.MQTTHost) > 63 || strings.ContainsAny(r.MQTTHost, ":\"\\ ") {
			return fmt.Errorf("%s.mqtt_host %q: a host name or IPv4 address of 1 to 63 characters", where, r.MQTTHost)
		}
		if r.MQTTPort < 1 || r.MQTTPort > 65535 {
			return fmt.Errorf("%s.mqtt_port %d: want 1 to 65535", where, r.MQTTPort)
		}
		if _, port, err := net.SplitHostPort(r.Address); r.Address != "" && (err != nil || port == "") {
			return fmt.Errorf("%s.address %q: want host:port", where, r.Address)
		}
		for _, c := range [][3]string{{"lwm2m_uri", r.LwM2MURI, "coap"}, {"lwm2m_secure_uri", r.LwM2MSecureURI, "coaps"}} {
			if u, err := url.Parse(c[1]); c[1] != "" && (err != nil || u.Scheme != c[2] || u.Port() == "") {
				return fmt.Errorf("%s.%s %q: want %s://host:port", where, c[0], c[1], c[2])
			}
		}
	}
	_, err := c.rules()
	return err
}

// rules parses the assignment rules and checks they name known regions.
func (c *ActivationConfig) rules() (regions.Rules, error) {
	rs := regions.Rules{Default: c.DefaultRegion}
	for i, r := range c.Rules {
		rule := regions.Rule{ProductKey: r.ProductKey, Region: r.Region}
		if r.SourceCIDR != "" {
			p, err := netip.ParsePrefix(r.SourceCIDR)
			if err != nil {
				return rs, fmt.Errorf("config: activation.rules[%d].source_cidr: %w", i, err)
			}
			rule.Source = p.Masked()
		}
		rs.List = append(rs.List, rule)
	}
	known := map[string]bool{}
	for _, r := range c.Regions {
		if known[r.ID] {
			return rs, fmt.Errorf("config: activation.regions: id %q given twice", r.ID)
		}
		known[r.ID] = true
	}
	if err := rs.Check(func(id string) bool { return known[id] }); err != nil {
		return rs, fmt.Errorf("config: activation: %w", err)
	}
	return rs, nil
}

// activationServer is the http.Server of an activation listener, with
// bounds for traffic from the Internet.
func activationServer(h http.Handler, tc *tls.Config, log *slog.Logger) *http.Server {
	// HTTP/1.1 only, as the API (device SDKs speak nothing else), which
	// also keeps net/http from rewriting TLSConfig when serving starts.
	return &http.Server{Handler: h, TLSConfig: tc, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
}

// activationListeners binds activation.listen and tls_listen for h.
func (w *wiring) activationListeners(h http.Handler) ([]*apiListener, error) {
	c := w.cfg.Activation
	var out []*apiListener
	bind := func(name, addr string, tc *tls.Config) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listen %s: %w", name, addr, err)
		}
		log := w.log.With("listener", name)
		out = append(out, &apiListener{name: name, srv: activationServer(h, tc, log),
			ln: w.apiConnTable().Listener(w.descriptors.forAPI(ln))})
		return nil
	}
	var err error
	if c.Listen != "" {
		err = bind("activation", c.Listen, nil)
	}
	if err == nil && c.TLSListen != "" {
		var tc *tls.Config
		if tc, err = w.certs.tlsConfig("activation-tls", c.TLSCertFile, c.TLSKeyFile); err == nil {
			err = bind("activation-tls", c.TLSListen, tc)
		}
	}
	if err != nil {
		for _, l := range out {
			l.ln.Close()
		}
		return nil, fmt.Errorf("activation: %w", err)
	}
	return out, nil
}

// regionListeners serves this region to its centre (role region), over
// the registry and the MQTT server (which notifies moved devices).
func (w *wiring) regionListeners() ([]*apiListener, error) {
	if w.cfg.Activation.Role != roleRegion {
		return nil, nil
	}
	local := &regions.Local{Registry: w.reg, Tokens: w.iotTokens}
	if w.cfg.CoAP.Listen != "" || w.cfg.CoAP.DTLSListen != "" {
		local.Endpoints = lwm2m.RegistrySecurity{Registry: w.reg}
	}
	// A moved device is told to bootstrap again by the server it is
	// connected to: Alibaba's thing.bootstrap.notify over MQTT, a
	// re-bootstrap over LwM2M.
	var notifiers regions.Notifiers
	if w.mqttServer != nil {
		notifiers = append(notifiers, w.mqttServer)
		local.Pusher = w.mqttServer
	}
	if w.lwm2mServer != nil {
		notifiers = append(notifiers, w.lwm2mServer)
	}
	if len(notifiers) > 0 {
		local.Notifier = notifiers
	}
	return w.activationListeners(activation.NewRegionHandler(local, w.cfg.Activation.Token, w.log.With("component", "activation")))
}

// runCentre runs the activation centre until ctx ends: the device
// endpoints and the admin action, over a directory in the store.
func runCentre(ctx context.Context, cfg *Config, log *slog.Logger) error {
	ac := cfg.Activation
	rules, err := ac.rules()
	if err != nil {
		return err
	}
	store, err := openStore(ctx, cfg.Store, cfg.DataDir, log, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	var infos []regions.RegionInfo
	for _, r := range ac.Regions {
		hc, err := regionHTTPClient(r, ac.RegionTimeout)
		if err != nil {
			return err
		}
		address := r.Address
		if address == "" {
			address = net.JoinHostPort(r.MQTTHost, strconv.Itoa(r.MQTTPort))
		}
		infos = append(infos, regions.RegionInfo{ID: r.ID, Client: activation.NewRegionClient(r.URL, r.Token, hc),
			Endpoint: regions.Endpoint{MQTTHost: r.MQTTHost, MQTTPort: r.MQTTPort, Address: address,
				LwM2MURI: r.LwM2MURI, LwM2MSecureURI: r.LwM2MSecureURI}})
	}
	clog := log.With("component", "activation")
	centre, err := regions.NewCentre(regions.CentreOptions{Regions: infos, Rules: rules, Directory: regions.NewDirectory(store),
		MoveGrace: ac.MoveGrace, Logger: clog})
	if err != nil {
		return err
	}
	var admins []activation.AdminToken
	for _, c := range cfg.API.Credentials {
		if c.Token != "" {
			admins = append(admins, activation.AdminToken{Project: c.ProjectID, Token: c.Token})
		}
	}
	pools, err := newDescriptorPools(cfg.Limits.Descriptors, cfg.Limits.RefusalLogRate, cfg.Limits.RefusalLogBurst, log)
	if err != nil {
		return err
	}
	w := wiring{cfg: cfg, log: log, certs: newServerCerts(cfg.DataDir, log), descriptors: pools}
	go pools.watchReserve(ctx, reserveCheckEvery, reserveWarnEvery, fdbudget.OpenDescriptors, log)
	w.certs.Watch(ctx, cfg.TLSReloadInterval)
	// limits.auth_failures and address_auth_failures, counted here: the
	// regions never see the devices' addresses.
	g := guard.NewLocal(cfg.Limits.guardConfig())
	ls, err := w.activationListeners(activation.NewCentreHandler(activation.CentreOptions{Centre: centre, Admins: admins,
		Guard: g, Logger: clog}))
	if err != nil {
		return err
	}
	var bootstrap *activation.BootstrapMQTT
	if ac.MQTTListen != "" || ac.MQTTTLSListen != "" {
		var tc *tls.Config
		if ac.MQTTTLSListen != "" {
			if tc, err = w.certs.tlsConfig("activation-mqtts", ac.TLSCertFile, ac.TLSKeyFile); err != nil {
				return err
			}
		}
		bootstrap, err = activation.NewBootstrapMQTT(activation.BootstrapOptions{Centre: centre, Listen: ac.MQTTListen,
			TLSListen: ac.MQTTTLSListen, TLS: tc, TimestampSkew: cfg.MQTT.TimestampSkew, Guard: g, Logger: clog,
			Descriptors: pools.forBootstrap()})
		if err == nil {
			err = bootstrap.Start(ctx)
		}
		if err != nil {
			return fmt.Errorf("activation: bootstrap MQTT: %w", err)
		}
		defer bootstrap.Shutdown(context.Background())
		log.Info("activation centre bootstrap MQTT listening", "addr", ac.MQTTListen, "tls_addr", ac.MQTTTLSListen)
	}
	if ac.BootstrapListen != "" || ac.BootstrapDTLSListen != "" {
		// coap.handshake_timeout and max_handshakes bound the DTLS
		// listener's handshakes, as at a region's LwM2M server.
		lbs, err := activation.NewBootstrapLwM2M(activation.BootstrapLwM2MOptions{Centre: centre,
			Listen: ac.BootstrapListen, DTLSListen: ac.BootstrapDTLSListen, Lifetime: ac.BootstrapLifetime, Timeout: 3 * ac.RegionTimeout,
			HandshakeTimeout: cfg.CoAP.HandshakeTimeout, MaxHandshakes: cfg.CoAP.MaxHandshakes, Guard: g, Logger: clog})
		if err != nil {
			return fmt.Errorf("activation: LwM2M bootstrap: %w", err)
		}
		_ = lbs.Start(ctx)
		defer lbs.Shutdown(context.Background())
		if a := lbs.Addr(); a != nil {
			log.Info("activation centre LwM2M bootstrap listening", "addr", a.String())
		}
		if a := lbs.DTLSAddr(); a != nil {
			log.Info("activation centre LwM2M bootstrap (dtls) listening", "addr", a.String())
		}
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		log.Info("activation centre listening", "addr", l.ln.Addr().String(), "tls", l.srv.TLSConfig != nil)
		go l.serve(errc)
	}
	sweepCtx, stopSweeps := context.WithCancel(ctx)
	sweepsDone := make(chan struct{})
	go func() { centre.RunSweeps(sweepCtx, ac.SweepInterval); close(sweepsDone) }()
	log.Info("iotgate ready", "role", roleCentre, "regions", len(infos))
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
	}
	stopSweeps()
	<-sweepsDone
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, l := range ls {
		if serr := l.shutdown(shutCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			log.Warn("activation shutdown", "listener", l.name, "err", serr)
		}
	}
	log.Info("stopped")
	return err
}

// regionHTTPClient is the centre's HTTP client of one region.
func regionHTTPClient(r ActivationRegion, timeout time.Duration) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("activation region %s: ca_file: %w", r.ID, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("activation region %s: ca_file %s holds no PEM certificate", r.ID, r.CAFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t, Timeout: timeout}, nil
}
