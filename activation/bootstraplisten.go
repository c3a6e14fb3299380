package activation

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// ListenerWrapper wraps each listener the bootstrap binds, beneath TLS:
// cmd/iotgate passes its pool of the process's descriptor budget
// (fdbudget.Pool), which closes connections accepted over it.
type ListenerWrapper interface {
	Listener(net.Listener) net.Listener
}

// wrappedTCP is a mochi TCP listener whose socket passes through wrap
// beneath TLS. It binds at Init, as mochi's own does (mochi calls Init
// from AddListener and adds the listener only if it succeeds).
type wrappedTCP struct {
	*listeners.Net // set by Init
	id, address    string
	tls            *tls.Config
	wrap           ListenerWrapper
}

var _ listeners.Listener = (*wrappedTCP)(nil)

func newWrappedTCP(id, address string, tc *tls.Config, wrap ListenerWrapper) *wrappedTCP {
	return &wrappedTCP{id: id, address: address, tls: tc, wrap: wrap}
}

func (l *wrappedTCP) ID() string { return l.id }

func (l *wrappedTCP) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	ln = l.wrap.Listener(ln)
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.Net = listeners.NewNet(l.id, ln)
	return l.Net.Init(log)
}
