// Command iotgate runs the device-access platform: the IoTDA-style REST
// API, the LwM2M (CoAP, DTLS) listeners and the MQTT(S) listeners over
// one embedded registry.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/registry"
)

func main() {
	configPath := flag.String("config", "", "YAML configuration file (default: built-in defaults)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: iotgate [-config file] [check]\n\n"+
			"  (no command)  run the platform\n"+
			"  check         verify, with the platform stopped, that the store's records, indexes and\n"+
			"                counters agree; prints each disagreement and exits 1 if there is any\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	var err error
	switch cmd := flag.Arg(0); cmd {
	case "":
		err = run(*configPath)
	case "check":
		var ok bool
		if ok, err = check(*configPath, os.Stdout); err == nil && !ok {
			os.Exit(1)
		}
	default:
		err = fmt.Errorf("unknown command %q (commands: check)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "iotgate:", err)
		os.Exit(2)
	}
}

// listener is a protocol front end the binary runs beside the API.
type listener interface {
	// Start binds and begins serving; it returns once the listener
	// accepts traffic.
	Start(ctx context.Context) error
	// Shutdown stops accepting and closes sessions.
	Shutdown(ctx context.Context) error
}

func run(configPath string) error {
	cfg, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("config: log_level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the TLS certificates once serving; caught from the
	// start so that one sent early does not end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	key, err := masterKey(&cfg)
	if err != nil {
		return err
	}
	creds, err := ensureCredentials(&cfg, os.Stderr)
	if err != nil {
		return err
	}
	n, err := openNode(ctx, &cfg, key, log, natsBus)
	if err != nil {
		return err
	}
	defer n.close()
	reg := n.reg
	// Devices whose deadline passed while we were down go before anything
	// can connect.
	if n, err := reg.SweepExpired(ctx); err != nil {
		return fmt.Errorf("initial expiry sweep: %w", err)
	} else if n > 0 {
		log.Info("deleted devices that were not connected within their timeout", "count", n)
	}

	apiCreds := make([]api.Credential, len(creds))
	for i, c := range creds {
		apiCreds[i] = api.Credential(c)
	}
	certs := newServerCerts(cfg.DataDir, log)
	w := wiring{cfg: &cfg, log: log, reg: reg, certs: certs, sessions: map[registry.Protocol]func() int{}}
	listeners, apiOpts, err := w.listeners()
	if err != nil {
		return err
	}
	apiOpts.Registry, apiOpts.Credentials, apiOpts.Logger, apiOpts.MaxClockSkew = reg, apiCreds, log, cfg.API.MaxClockSkew
	apiOpts.Limits = cfg.Limits.API.api()
	apiOpts.Node, apiOpts.Bus = n.name, n.busHealth()
	srv := api.New(apiOpts)

	apiListeners, err := w.apiListeners(srv)
	if err != nil {
		return err
	}
	httpErr := make(chan error, len(apiListeners))
	for _, l := range apiListeners {
		go l.serve(httpErr)
		log.Info("api listening", "addr", l.ln.Addr().String(), "tls", l.srv.TLSConfig != nil)
	}
	// Certificates are renewed in place: on SIGHUP (see hup), and when
	// their files change (polled).
	certs.Watch(ctx, cfg.TLSReloadInterval)
	if cfg.DebugListen != "" {
		dbg, dln, err := debugServer(cfg.DebugListen, n.store.stats)
		if err != nil {
			return err
		}
		go func() { _ = dbg.Serve(dln) }()
		defer dbg.Close()
		log.Warn("debug listener serving /debug/vars and /debug/pprof without authentication", "addr", dln.Addr().String())
	}

	regDone := make(chan struct{})
	regCtx, stopReg := context.WithCancel(context.Background())
	go func() { _ = reg.Run(regCtx); close(regDone) }()
	bansDone := w.shareBans(regCtx)
	fwdDone := startForwarding(regCtx, cfg.Forwarding, reg, n.lease, log)
	beatDone := make(chan struct{})
	go func() {
		heartbeats(regCtx, reg, time.Now(), w.sessionCounts, cfg.Cluster.Advertise, log)
		close(beatDone)
	}()

	started := 0
	var startErr error
	for _, l := range listeners {
		if startErr = l.Start(ctx); startErr != nil {
			break
		}
		started++
	}
	if startErr == nil {
		srv.SetReady(true)
		log.Info("iotgate ready")
	wait:
		for {
			select {
			case <-ctx.Done():
				log.Info("shutting down")
				break wait
			case <-hup:
				log.Info("SIGHUP: reloading TLS certificates")
				certs.Reload()
			case startErr = <-httpErr:
				break wait
			}
		}
	}

	// Stop taking new work, let in-flight requests finish, then close the
	// registry (its committer drains) and the store (deferred).
	srv.SetReady(false)
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := started - 1; i >= 0; i-- {
		if err := listeners[i].Shutdown(shutCtx); err != nil {
			log.Warn("listener shutdown", "err", err)
		}
	}
	for _, l := range apiListeners {
		if err := l.shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("api shutdown", "listener", l.name, "err", err)
		}
	}
	stopReg()
	fwdDone()
	<-regDone
	<-beatDone
	bansDone()
	log.Info("stopped")
	return startErr
}

func masterKey(cfg *Config) ([]byte, error) {
	if cfg.MasterKey != "" {
		return registry.ParseMasterKey(cfg.MasterKey)
	}
	if v := os.Getenv("IOTGATE_MASTER_KEY"); v != "" {
		k, err := registry.ParseMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("IOTGATE_MASTER_KEY: %w", err)
		}
		return k, nil
	}
	return registry.LoadOrCreateMasterKey(cfg.DataDir)
}
