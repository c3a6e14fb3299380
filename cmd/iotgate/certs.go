package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/iotgate/iotgate/servercert"
)

// serverCerts holds the TLS server certificates of the listeners (MQTTS,
// the REST API), one Reloader per certificate file pair: listeners
// configured with the same files, or both on the generated one, share
// it. Reload (SIGHUP) and Watch (polling) swap renewed files in without
// a restart.
type serverCerts struct {
	dataDir string
	log     *slog.Logger
	byFiles map[[2]string]*servercert.Reloader
	// generated is set once a listener uses data_dir/tls: Reload renews
	// it first when it nears its end.
	generated bool
}

func newServerCerts(dataDir string, log *slog.Logger) *serverCerts {
	return &serverCerts{dataDir: dataDir, log: log.With("component", "tls"), byFiles: make(map[[2]string]*servercert.Reloader)}
}

// tlsConfig returns a server tls.Config that serves certFile/keyFile
// through a Reloader; empty names mean the generated certificate under
// data_dir/tls. listener names the user in the log.
func (s *serverCerts) tlsConfig(listener, certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" {
		g, err := servercert.LoadOrCreate(s.generatedDir(), time.Now())
		if err != nil {
			return nil, err
		}
		certFile, keyFile, s.generated = g.CertFile, g.KeyFile, true
		s.log.Info(listener+" uses a generated certificate; clients must trust its CA",
			"ca_file", g.CAFile, "cert_file", g.CertFile, "key_file", g.KeyFile, "created", g.Created)
	}
	key := [2]string{certFile, keyFile}
	r := s.byFiles[key]
	if r == nil {
		var err error
		if r, err = servercert.NewReloader(certFile, keyFile, s.log); err != nil {
			return nil, err
		}
		s.byFiles[key] = r
	}
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}, nil
}

func (s *serverCerts) generatedDir() string { return filepath.Join(s.dataDir, "tls") }

// Reload renews the generated certificate if it is near its end, then
// reloads every certificate; each failure is logged by its Reloader and
// keeps the certificate it served.
func (s *serverCerts) Reload() {
	if s.generated {
		if _, err := servercert.LoadOrCreate(s.generatedDir(), time.Now()); err != nil {
			s.log.Warn("generated certificate not renewed", "err", err)
		}
	}
	for _, r := range s.byFiles {
		_ = r.Reload()
	}
}

// Watch polls every certificate's files until ctx ends; interval <= 0
// disables polling (SIGHUP still reloads).
func (s *serverCerts) Watch(ctx context.Context, interval time.Duration) {
	for _, r := range s.byFiles {
		go r.Watch(ctx, interval)
	}
}
