// Package natsbus is the cluster's bus over NATS: the registry's
// Invalidator (cache invalidation notices broadcast to every node),
// EventHinter (which projects' events a node committed, to wake the other
// nodes' stream readers) and NodeLink (request/reply to one named node).
//
// NATS carries no state of record, so a node starts and serves while
// NATS is down: Open connects in the background and reconnects forever.
// Notices lost while the link was down are made up for by a "drop-all":
// on every (re)connection the node drops its own cache and tells the
// other nodes to drop theirs.
//
// Subjects (Prefix "iotgate" by default):
//
//	{prefix}.inval         invalidation notices, every node subscribes
//	{prefix}.events        event hints, every node subscribes
//	{prefix}.node.{node}   requests to one node (NodeLink)
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/iotgate/iotgate/registry"
)

// The Bus is both halves of the registry's cluster seam.
var (
	_ registry.Invalidator = (*Bus)(nil)
	_ registry.EventHinter = (*Bus)(nil)
	_ registry.NodeLink    = (*Bus)(nil)
)

// Options configure a Bus. Zero durations and sizes take the defaults
// named beside them.
type Options struct {
	// URL lists the NATS servers, comma-separated
	// ("nats://127.0.0.1:4222,nats://127.0.0.1:4223"); credentials may
	// ride in the URL (nats://user:pass@host:port).
	URL string
	// Node names this node: [a-z0-9-]{1,32}, unique in the cluster.
	Node string
	// Prefix starts every subject ("iotgate"): dot-separated tokens of
	// [A-Za-z0-9_-], so that several clusters can share one NATS.
	Prefix string
	Logger *slog.Logger // nil: slog.Default()

	// ConnectTimeout bounds one attempt to reach a server (2 s).
	ConnectTimeout time.Duration
	// ReconnectWait is the pause between rounds of reconnect attempts
	// over all servers (250 ms).
	ReconnectWait time.Duration
	// PingInterval is how often an idle connection is checked; a server
	// that stops answering is given up after two missed pings (5 s).
	PingInterval time.Duration
	// CallTimeout bounds a Call whose context has no deadline (30 s).
	CallTimeout time.Duration
	// MaxInFlight bounds the requests this node's Serve handles at once;
	// beyond it callers get ErrOverloaded (256).
	MaxInFlight int
	// PublishQueue bounds the invalidation notices waiting to be handed
	// to NATS; when it is full notices are counted lost and a drop-all
	// follows (8192).
	PublishQueue int
	// DrainTimeout bounds Close's wait for in-flight requests and queued
	// notices (5 s).
	DrainTimeout time.Duration
}

// Defaults for Options' zero values.
const (
	DefaultPrefix         = "iotgate"
	DefaultConnectTimeout = 2 * time.Second
	DefaultReconnectWait  = 250 * time.Millisecond
	DefaultPingInterval   = 5 * time.Second
	DefaultCallTimeout    = 30 * time.Second
	DefaultMaxInFlight    = 256
	DefaultPublishQueue   = 8192
	DefaultDrainTimeout   = 5 * time.Second
)

// ErrDisconnected is what Healthy reports (wrapped, with since when)
// while the bus has no connection to any NATS server.
var ErrDisconnected = errors.New("NATS unreachable")

// Bus is one node's connection to the cluster's bus.
type Bus struct {
	o      Options
	log    *slog.Logger
	nc     *nats.Conn
	inval  string // the invalidation subject
	hints  string // the event hints' subject
	closed atomic.Bool

	// health
	mu        sync.Mutex
	downSince time.Time // zero while connected
	lastErr   error     // why the last connection was lost or refused

	// awaitingFirst is set when Open returned before the first
	// connection was made: when it comes, this node may have missed
	// notices, as after a reconnection. (A connection made between
	// nats.Connect's return and the check finds it unset: nothing could
	// be missed before Open returned.)
	awaitingFirst atomic.Bool
	// upAt is when the connection was last made (Unix ns): for a while
	// after it the servers may not know every subscription yet.
	upAt atomic.Int64

	invalidator
	link
	eventHints eventHints
}

// Open validates o and starts connecting to NATS in the background; it
// fails only on bad options. The bus is usable at once: notices
// published before the connection is up are buffered (see Publish), and
// Calls fail with ErrNodeUnreachable until it is. Open does not wait on
// ctx; request handlers' contexts inherit its values, not its end.
func Open(ctx context.Context, o Options) (*Bus, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.defaults()
	b := &Bus{o: o, log: o.Logger.With("node", o.Node), inval: o.Prefix + ".inval", hints: o.Prefix + ".events"}
	baseCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.invalidator.init(b, o.PublishQueue)
	b.eventHints.init(b)
	b.link.init(b, baseCtx, cancel, o.MaxInFlight)

	b.mu.Lock()
	b.downSince = time.Now()
	b.lastErr = errors.New("not connected yet")
	b.mu.Unlock()

	nc, err := nats.Connect(o.URL,
		nats.Name("iotgate-"+o.Node),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(o.ReconnectWait/4, o.ReconnectWait/4),
		nats.Timeout(o.ConnectTimeout),
		nats.PingInterval(o.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(b.connected),
		nats.ReconnectHandler(b.reconnected),
		nats.DisconnectErrHandler(b.disconnected),
		nats.ReconnectErrHandler(b.attemptFailed),
		nats.DrainTimeout(o.DrainTimeout),
		nats.ErrorHandler(b.asyncError),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("natsbus: Options.URL %q: %w", redact(o.URL), err)
	}
	b.nc = nc
	if nc.IsConnected() {
		// Connected before Open returned: nothing can have been missed,
		// and the other nodes need not drop their caches for a start.
		b.markUp()
	} else {
		b.awaitingFirst.Store(true)
	}
	if err := b.invalidator.start(); err != nil {
		b.nc.Close()
		cancel()
		return nil, err
	}
	if err := b.eventHints.start(); err != nil {
		b.invalidator.stop(time.Now())
		b.nc.Close()
		cancel()
		return nil, err
	}
	return b, nil
}

func (o *Options) validate() error {
	if strings.TrimSpace(o.URL) == "" {
		return errors.New("natsbus: Options.URL is empty (want e.g. nats://127.0.0.1:4222)")
	}
	for _, u := range strings.Split(o.URL, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			return fmt.Errorf("natsbus: Options.URL %q has an empty entry", redact(o.URL))
		}
		if strings.Contains(u, "://") {
			p, err := url.Parse(u)
			if err != nil {
				return fmt.Errorf("natsbus: Options.URL entry %q is not a URL", redact(u))
			}
			switch p.Scheme {
			case "nats", "tls", "ws", "wss":
			default:
				return fmt.Errorf("natsbus: Options.URL entry %q: scheme %q is not nats, tls, ws or wss", redact(u), p.Scheme)
			}
			if p.Host == "" {
				return fmt.Errorf("natsbus: Options.URL entry %q has no host", redact(u))
			}
		}
	}
	if !validNode(o.Node) {
		return fmt.Errorf("natsbus: Options.Node %q must be 1 to 32 of [a-z0-9-]", o.Node)
	}
	if o.Prefix != "" && !validPrefix(o.Prefix) {
		return fmt.Errorf("natsbus: Options.Prefix %q must be dot-separated tokens of [A-Za-z0-9_-]", o.Prefix)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ConnectTimeout", o.ConnectTimeout}, {"ReconnectWait", o.ReconnectWait},
		{"PingInterval", o.PingInterval}, {"CallTimeout", o.CallTimeout}, {"DrainTimeout", o.DrainTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("natsbus: Options.%s is negative (%v)", d.name, d.v)
		}
	}
	if o.MaxInFlight < 0 {
		return fmt.Errorf("natsbus: Options.MaxInFlight is negative (%d)", o.MaxInFlight)
	}
	if o.PublishQueue < 0 {
		return fmt.Errorf("natsbus: Options.PublishQueue is negative (%d)", o.PublishQueue)
	}
	return nil
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&o.ConnectTimeout, DefaultConnectTimeout)
	set(&o.ReconnectWait, DefaultReconnectWait)
	set(&o.PingInterval, DefaultPingInterval)
	set(&o.CallTimeout, DefaultCallTimeout)
	set(&o.DrainTimeout, DefaultDrainTimeout)
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.PublishQueue == 0 {
		o.PublishQueue = DefaultPublishQueue
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// validNode reports whether s is a node name: [a-z0-9-]{1,32}, so also a
// single NATS subject token.
func validNode(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validPrefix(s string) bool {
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// redact hides passwords in a (comma-separated) URL for error messages.
func redact(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		} else if strings.Contains(p, "@") {
			parts[i] = "(a URL with credentials)"
		}
	}
	return strings.Join(parts, ",")
}

// Healthy is nil while the bus is connected to a NATS server; otherwise
// it wraps ErrDisconnected and says since when and why.
func (b *Bus) Healthy() error {
	if b.closed.Load() {
		return fmt.Errorf("natsbus: %w: the bus is closed", ErrDisconnected)
	}
	if b.nc.IsConnected() {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	since := b.downSince
	if since.IsZero() { // between a loss and its handler
		since = time.Now()
	}
	return fmt.Errorf("natsbus: %w since %s (%s ago): %v", ErrDisconnected,
		since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second), b.lastErr)
}

// Close stops serving requests (waiting up to DrainTimeout for those in
// flight), hands the queued notices to NATS and drains the connection.
// The bus must not be used after Close.
func (b *Bus) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	deadline := time.Now().Add(b.o.DrainTimeout)
	b.link.stop(deadline)
	b.invalidator.stop(deadline)
	b.eventHints.stop(deadline)
	closed := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := b.nc.Drain(); err != nil { // not connected: nothing to drain into
		b.nc.Close()
		return nil
	}
	select {
	case <-closed:
	case <-time.After(time.Until(deadline) + time.Second):
		b.nc.Close()
	}
	return nil
}

// connected runs when the first connection is made. If it came only
// after Open had returned, the node ran without the bus for a while.
func (b *Bus) connected(nc *nats.Conn) {
	b.markUp()
	if b.awaitingFirst.Swap(false) {
		b.log.Info("natsbus: connected to NATS", "server", nc.ConnectedUrlRedacted())
		b.resync()
	}
}

// reconnected runs when a lost connection is back: notices sent to this
// node meanwhile are lost, and perhaps some it sent (the reconnect
// buffer can overflow, and what the old server had not forwarded yet is
// gone).
func (b *Bus) reconnected(nc *nats.Conn) {
	b.markUp()
	b.log.Info("natsbus: reconnected to NATS", "server", nc.ConnectedUrlRedacted())
	b.resync()
}

func (b *Bus) disconnected(_ *nats.Conn, err error) {
	if b.closed.Load() {
		return
	}
	if err == nil {
		err = errors.New("connection closed by the server")
	}
	b.mu.Lock()
	if b.downSince.IsZero() {
		b.downSince = time.Now()
	}
	b.lastErr = err
	b.mu.Unlock()
	b.log.Warn("natsbus: lost NATS; serving on, notices are buffered", "err", err)
}

// attemptFailed records why an attempt to (re)connect failed, for
// Healthy; attempts repeat every ReconnectWait, so they are not logged.
func (b *Bus) attemptFailed(_ *nats.Conn, err error) {
	if err == nil {
		return
	}
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
}

func (b *Bus) markUp() {
	b.mu.Lock()
	b.downSince, b.lastErr = time.Time{}, nil
	b.mu.Unlock()
	b.upAt.Store(time.Now().UnixNano())
}

// asyncError handles NATS' asynchronous errors. A slow consumer on the
// invalidation subscription means notices were dropped on this node.
func (b *Bus) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if sub != nil && sub.Subject == b.hints && errors.Is(err, nats.ErrSlowConsumer) {
		b.eventHints.missed()
		return
	}
	if sub != nil && sub.Subject == b.inval && errors.Is(err, nats.ErrSlowConsumer) {
		b.log.Warn("natsbus: invalidation notices dropped (slow consumer); dropping the cache")
		b.invalidator.lostIncoming()
		return
	}
	b.log.Warn("natsbus: NATS error", "err", err)
}

// Server is the URL of the NATS server the bus is connected to, without
// credentials ("" while disconnected).
func (b *Bus) Server() string {
	if !b.nc.IsConnected() {
		return ""
	}
	return b.nc.ConnectedUrlRedacted()
}
