package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// BusHealth is the cluster's bus as the health check sees it.
type BusHealth interface {
	// Healthy reports whether the bus is reachable now.
	Healthy() error
}

// Health probes: each bounded, and one result served to every check for
// healthProbeAge, so that probing /healthz (unauthenticated) as fast as
// one likes costs the store at most one read per healthProbeAge.
const (
	healthProbeTimeout = 2 * time.Second
	healthProbeAge     = time.Second
)

// Component states in /healthz.
const (
	healthOK          = "ok"
	healthDisabled    = "disabled"
	healthUnreachable = "unreachable"
)

// healthView is the /healthz body.
type healthView struct {
	Status string `json:"status"`
	Node   string `json:"node,omitempty"`
	Store  string `json:"store,omitempty"`
	Bus    string `json:"bus,omitempty"`
}

// healthProbe is the last store and bus probe.
type healthProbe struct {
	mu    sync.Mutex
	at    time.Time
	store string
	bus   string
}

// healthz answers 200 when this node is ready and reaches its store and
// (clustered) its bus, else 503 with what is down. Reasons are logged
// (at debug: the endpoint is unauthenticated), not served.
func (s *Server) healthz(c echo.Context) error {
	if !s.ready.Load() {
		return c.JSON(http.StatusServiceUnavailable, healthView{Status: "starting", Node: s.node})
	}
	store, bus := s.probe(c.Request().Context())
	v := healthView{Status: "ok", Node: s.node, Store: store, Bus: bus}
	if store != healthOK || bus == healthUnreachable {
		v.Status = "unavailable"
		return c.JSON(http.StatusServiceUnavailable, v)
	}
	return c.JSON(http.StatusOK, v)
}

// probe reads the store once and asks the bus, unless a probe newer than
// healthProbeAge answers; concurrent checks wait for one probe.
func (s *Server) probe(ctx context.Context) (store, bus string) {
	p := &s.health
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < healthProbeAge {
		return p.store, p.bus
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthProbeTimeout)
	defer cancel()
	p.store, p.bus = healthOK, healthDisabled
	if err := s.reg.Ping(ctx); err != nil {
		p.store = healthUnreachable
		s.log.Debug("health check: store unreachable", "err", err)
	}
	if s.bus != nil {
		p.bus = healthOK
		if err := s.bus.Healthy(); err != nil {
			p.bus = healthUnreachable
			s.log.Debug("health check: bus unreachable", "err", err)
		}
	}
	p.at = time.Now()
	return p.store, p.bus
}
