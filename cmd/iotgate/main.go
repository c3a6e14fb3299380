// Command iotgate runs the device-access platform: the IoTDA-style REST
// API, the LwM2M (CoAP, DTLS) listeners and the MQTT(S) listeners over
// one embedded registry.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/fdbudget"
	"github.com/iotgate/iotgate/metrics"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/regions"
)

func main() { os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr)) }

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
	log, err := newLogger(&cfg, os.Stderr)
	if err != nil {
		return err
	}
	// Everything that can refuse the start is checked before anything is
	// written: a busy port must not cost the "shown once" credentials.
	if err := cfg.preflight(configPath); err != nil {
		return err
	}

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
	if cfg.Activation.Role == roleCentre {
		return runCentre(ctx, &cfg, log)
	}
	key, err := masterKey(&cfg)
	if err != nil {
		return err
	}
	creds, err := ensureCredentials(&cfg, os.Stderr)
	if err != nil {
		return err
	}
	met := metrics.New()
	n, err := openNode(ctx, &cfg, key, log, natsBus, met)
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
	// Cut once the store is open, so that the start line counts the
	// descriptors it holds.
	pools, err := newDescriptorPools(cfg.Limits.Descriptors, cfg.Limits.RefusalLogRate, cfg.Limits.RefusalLogBurst, log)
	if err != nil {
		return err
	}
	certs := newServerCerts(cfg.DataDir, log)
	w := wiring{cfg: &cfg, log: log, reg: reg, certs: certs, sessions: map[registry.Protocol]func() int{},
		metrics: met, protocolStats: map[string]func() metrics.ProtocolStats{}, descriptors: pools}
	for _, c := range creds {
		w.apiTokens = append(w.apiTokens, c.Token)
	}
	if cfg.Activation.Role == roleRegion {
		w.iotTokens = regions.NewTokens(key, cfg.Activation.TokenTTL)
	}
	listeners, apiOpts, err := w.listeners()
	if err != nil {
		return err
	}
	fwd := newForwarding(cfg.Forwarding, reg, n.lease, log, met.ForwardDelivered)
	if err := met.AddSources(w.metricsSources(n.store, fwd)); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	apiOpts.Registry, apiOpts.Credentials, apiOpts.Logger, apiOpts.MaxClockSkew = reg, apiCreds, log, cfg.API.MaxClockSkew
	apiOpts.Limits = cfg.Limits.API.api()
	apiOpts.Node, apiOpts.Bus = n.name, n.busHealth()
	tasks := newBatchTasks(cfg.BatchTasks, n, log)
	apiOpts.BatchTasks = tasks
	srv := api.New(apiOpts)

	apiListeners, err := w.apiListeners(srv)
	if err != nil {
		return err
	}
	regionListeners, err := w.regionListeners()
	if err != nil {
		return err
	}
	apiListeners = append(apiListeners, regionListeners...)
	httpErr := make(chan error, len(apiListeners))
	for _, l := range apiListeners {
		go l.serve(httpErr)
		log.Info("api listening", "listener", l.name, "addr", l.ln.Addr().String(), "tls", l.srv.TLSConfig != nil)
	}
	// Certificates are renewed in place: on SIGHUP (see hup), and when
	// their files change (polled).
	certs.Watch(ctx, cfg.TLSReloadInterval)
	if n.store.backup != nil {
		// Not fatal: without it only an online backup is lost (a path
		// over the socket limit of 108 bytes, say).
		if adm, err := serveAdmin(cfg.DataDir, n.store.backup, log.With("component", "admin")); err != nil {
			log.Warn("admin socket not served: iotgate backup works only with the server stopped", "err", err)
		} else {
			defer adm.Close()
		}
	}
	if cfg.Metrics.Listen != "" {
		ms, mln, err := w.metricsServer()
		if err != nil {
			return err
		}
		go func() { _ = ms.Serve(mln) }()
		defer ms.Close()
		log.Info("metrics listening", "addr", mln.Addr().String(), "token_required", !metrics.Loopback(mln.Addr()))
	}
	if cfg.DebugListen != "" {
		dbg, dln, err := debugServer(cfg.DebugListen, n.store.stats)
		if err != nil {
			return err
		}
		go func() { _ = dbg.Serve(pools.forOps(dln)) }()
		defer dbg.Close()
		log.Warn("debug listener serving /debug/vars and /debug/pprof without authentication", "addr", dln.Addr().String())
	}

	regDone := make(chan struct{})
	regCtx, stopReg := context.WithCancel(context.Background())
	go func() { _ = reg.Run(regCtx); close(regDone) }()
	bansDone := w.shareBans(regCtx)
	go pools.watchReserve(regCtx, reserveCheckEvery, reserveWarnEvery, fdbudget.OpenDescriptors, log)
	fwdDone := runForwarding(regCtx, fwd)
	tasksDone := runBatchTasks(regCtx, tasks)
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
		// Firmware items under way when the last process stopped: their
		// progress lived in its memory; the listener takes them up again.
		if n, err := reg.ResumeFirmwareUpgrades(ctx); err != nil {
			log.Error("resuming firmware upgrades", "err", err)
		} else if n > 0 {
			log.Info("firmware upgrades resumed", "items", n)
		}
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
	tasksDone()
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
