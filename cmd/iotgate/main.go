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
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

func main() {
	configPath := flag.String("config", "", "YAML configuration file (default: built-in defaults)")
	flag.Parse()
	if err := run(*configPath); err != nil {
		fmt.Fprintln(os.Stderr, "iotgate:", err)
		os.Exit(1)
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
	store, err := badgerkv.Open(badgerkv.Options{Dir: cfg.DataDir + "/db", Logger: log, Queues: registry.Queues(),
		MinFreeBytes: cfg.Store.MinFreeBytes, BallastBytes: cfg.Store.BallastBytes})
	if err != nil {
		return err
	}
	defer store.Close()
	rc := cfg.Registry
	reg, err := registry.New(registry.Options{Store: store, MasterKey: key, Logger: log, SweepInterval: rc.SweepInterval,
		CacheEntries: rc.CacheEntries, CacheMaxAge: rc.CacheMaxAge, Quotas: registry.Quotas{DevicesPerProduct: rc.MaxDevicesPerProduct,
			SubDevicesPerGateway: rc.MaxSubDevicesPerGateway, ClientIDsPerDevice: rc.MaxClientIDsPerDevice,
			SubDevicesPerRequest: rc.MaxSubDevicesPerRequest}})
	if err != nil {
		return err
	}
	defer reg.Close()
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
	w := wiring{cfg: &cfg, log: log, reg: reg}
	listeners, apiOpts, err := w.listeners()
	if err != nil {
		return err
	}
	apiOpts.Registry, apiOpts.Credentials, apiOpts.Logger, apiOpts.MaxClockSkew = reg, apiCreds, log, cfg.API.MaxClockSkew
	srv := api.New(apiOpts)

	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", cfg.API.Listen, err)
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- httpSrv.Serve(ln) }()
	log.Info("api listening", "addr", ln.Addr().String())
	if cfg.DebugListen != "" {
		dbg, dln, err := debugServer(cfg.DebugListen, store.Stats)
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
		select {
		case <-ctx.Done():
			log.Info("shutting down")
		case err := <-httpErr:
			startErr = fmt.Errorf("api server: %w", err)
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
	if err := httpSrv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("api shutdown", "err", err)
	}
	stopReg()
	<-regDone
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
