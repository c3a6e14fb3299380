// Package httpchan is the HTTP_FORWARDING channel: each message is POSTed
// as IoTDA's push envelope, and a 2xx answer within the timeout is the
// destination's acknowledgement.
package httpchan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/registry"
)

// DefaultTimeout is IoTDA's: a push not answered within 15 s failed.
const DefaultTimeout = 15 * time.Second

// CAStore gives the CA certificates uploaded through the certificate API
// (*registry.Registry satisfies it).
type CAStore interface {
	CACert(ctx context.Context, project, id string) (*registry.CACert, error)
}

// Options configure the channel; zero fields take defaults.
type Options struct {
	CAs CAStore
	// Timeout bounds one push, answer included.
	Timeout time.Duration
	// MaxConns bounds the connections to one destination (the engine's
	// lanes deliver concurrently); zero means 16.
	MaxConns int
	// Now is the clock of signatures (nil: time.Now).
	Now func() time.Time
}

// Opener returns the forwarding.Opener of HTTP_FORWARDING actions.
func Opener(o Options) forwarding.Opener {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return func(ctx context.Context, a *registry.RuleAction) (forwarding.Channel, error) {
		return open(ctx, o, a)
	}
}

type channel struct {
	url    string
	token  string
	client *http.Client
	now    func() time.Time
}

func open(ctx context.Context, o Options, a *registry.RuleAction) (*channel, error) {
	h := a.Detail.HTTP
	if h == nil {
		return nil, fmt.Errorf("action %s: no http_forwarding detail", a.ID)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.CertID != "" {
		if o.CAs == nil {
			return nil, errors.New("httpchan: no certificate store for cert_id")
		}
		c, err := o.CAs.CACert(ctx, a.ProjectID, h.CertID)
		if err != nil {
			return nil, fmt.Errorf("CA certificate %s of action %s: %w", h.CertID, a.ID, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.PEM)) {
			return nil, fmt.Errorf("CA certificate %s of action %s: no certificate in its PEM", h.CertID, a.ID)
		}
		tlsConf.RootCAs = pool
	}
	if h.SNIEnable {
		// cn_name may carry a port (IoTDA's example: domain:8443).
		name := h.CNName
		if host, _, err := net.SplitHostPort(name); err == nil {
			name = host
		}
		tlsConf.ServerName = name
	}
	tr := &http.Transport{
		Proxy:               nil, // pushes go straight to the destination
		DialContext:         (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: o.Timeout,
		MaxIdleConnsPerHost: o.MaxConns,
		MaxConnsPerHost:     o.MaxConns,
		IdleConnTimeout:     90 * time.Second,
	}
	ch := &channel{url: h.URL, now: o.Now, client: &http.Client{Transport: tr, Timeout: o.Timeout,
		// A redirect is not an acknowledgement, and the envelope must
		// not follow it elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if h.SignatureEnable {
		ch.token = h.Token
	}
	return ch, nil
}

// StatusError is a destination's answer that is not a 2xx.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("destination answered %d", e.Code) }

func (c *channel) Deliver(ctx context.Context, m *forwarding.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(m.Payload))
	if err != nil {
		return fmt.Errorf("push request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if c.token != "" {
		ts := strconv.FormatInt(c.now().UnixMilli(), 10)
		nonce := newNonce()
		req.Header.Set("timestamp", ts)
		req.Header.Set("nonce", nonce)
		req.Header.Set("signature", Signature(c.token, ts, nonce))
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	// Drained (bounded) so the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Code: resp.StatusCode}
	}
	return nil
}

func (c *channel) Close() error {
	c.client.CloseIdleConnections()
	return nil
}

// Signature is what a push signed with token carries in its signature
// header: the hex SHA-256 of token, timestamp and nonce sorted and
// joined, which a receiver recomputes from the timestamp and nonce
// headers to know the push came from the platform.
func Signature(token, timestamp, nonce string) string {
	parts := []string{token, timestamp, nonce}
	slices.Sort(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

func newNonce() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}
