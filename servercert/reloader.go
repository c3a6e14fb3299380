// Package servercert provides the TLS server certificates of iotgate's
// listeners (MQTTS, the REST API over HTTPS): a local CA and a server
// certificate generated for deployments that bring none, and a Reloader
// that swaps a renewed certificate in without a restart.
package servercert

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Reloader serves a certificate and key pair read from two PEM files
// through tls.Config.GetCertificate, and replaces it atomically when
// Reload finds new, valid files. Handshakes in progress keep the
// certificate they started with; a new file that does not load (half
// written, a key that does not match, expired) leaves the served
// certificate as it was.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	cert atomic.Pointer[tls.Certificate]

	mu    sync.Mutex // serialises Reload and Changed
	stamp stamp      // of the files at the last attempt, good or bad
}

// stamp identifies a version of the two files cheaply (a stat each).
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// NewReloader loads the pair once; an error if it does not load, since a
// listener cannot start without a certificate. A nil log discards.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	r.stamp = r.stat()
	c, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert.Store(c)
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate: the current
// certificate, one atomic load per handshake.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate is the certificate served now.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// Reload reads the files again and serves them if they load; otherwise it
// keeps the current certificate, logs why at warn, and returns the
// error.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamp = r.stat()
	return r.reloadLocked()
}

// ReloadIfChanged is Reload when either file's size or modification time
// differs from the last attempt, so a poller retries a bad file only once
// it has been written again.
func (r *Reloader) ReloadIfChanged() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stat()
	if s == r.stamp {
		return nil
	}
	r.stamp = s
	return r.reloadLocked()
}

func (r *Reloader) reloadLocked() error {
	c, err := r.load()
	if err != nil {
		r.log.Warn("tls certificate not reloaded; still serving the previous one",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
		return err
	}
	old := r.cert.Swap(c)
	if old != nil && old.Leaf != nil && old.Leaf.Equal(c.Leaf) {
		return nil
	}
	r.log.Info("tls certificate reloaded", "cert_file", r.certFile, "subject", c.Leaf.Subject.String(),
		"serial", c.Leaf.SerialNumber.Text(16), "not_after", c.Leaf.NotAfter.UTC())
	return nil
}

// Watch polls the files every interval and reloads them when they
// change, until ctx ends. interval <= 0 returns at once.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.ReloadIfChanged() // logged by reloadLocked
		}
	}
}

// load reads and checks the pair: the key must match the certificate
// (tls.LoadX509KeyPair checks it) and the certificate must not have
// expired.
func (r *Reloader) load() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("servercert: %w", err)
	}
	// LoadX509KeyPair fills Leaf (Go 1.23 and later).
	if now := r.now(); now.After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("servercert: %s expired at %s", r.certFile, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

func (r *Reloader) stat() stamp {
	var s stamp
	if fi, err := os.Stat(r.certFile); err == nil {
		s.certMod, s.certSize = fi.ModTime(), fi.Size()
	}
	if fi, err := os.Stat(r.keyFile); err == nil {
		s.keyMod, s.keySize = fi.ModTime(), fi.Size()
	}
	return s
}
