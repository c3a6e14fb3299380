// Package api serves the IoTDA v5 REST API (products, devices, device CA
// certificates, device data and commands) over echo. It is an adapter onto
// the registry, which it uses through the Registry interface it declares,
// and reaches devices only through the registry's Sender interfaces,
// never through a protocol package.
package api

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/api/aksk"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Credential lets one tenant call the API: AK/SK signing, or a static
// token sent as X-Auth-Token. It grants access to ProjectID only.
type Credential struct {
	ProjectID string
	AccessKey string
	SecretKey string
	Token     string
}

// Options configures the API server.
type Options struct {
	Registry    Registry
	Credentials []Credential
	// MaxClockSkew bounds X-Sdk-Date; zero means 15 minutes.
	MaxClockSkew time.Duration
	Logger       *slog.Logger
	// Router reaches devices (commands, messages): the registry's
	// delivery router.
	Router Deliverer
	// CommandTimeout is how long a synchronous command waits; zero means
	// IoTDA's 20 s.
	CommandTimeout time.Duration
	// Limits bound request rates, sizes and timeouts; the zero value has
	// no rate limits and the default sizes and timeouts.
	Limits Limits
	// Bans is the ban list served at /banned (banned.go); nil: no such
	// routes.
	Bans guard.Guard
	// Node names this node in /healthz (a cluster's node_id, or
	// "local").
	Node string
	// Bus is the cluster's bus, probed by /healthz; nil on a single node
	// (reported "disabled").
	Bus BusHealth
	// BatchTasks serves /batchtasks and /batchtask-files; nil: no such
	// routes.
	BatchTasks BatchTasks
}

// Server is the REST API.
type Server struct {
	reg      Registry
	log      *slog.Logger
	echo     *echo.Echo
	verifier *aksk.Verifier
	byAK     map[string]*Credential
	byToken  map[string]*Credential
	ready    atomic.Bool
	router   Deliverer
	cmdWait  time.Duration

	limits Limits
	// byCred holds each credential's token bucket (nil map: no limit);
	// unauth the per-address buckets of unauthenticated requests.
	byCred map[*Credential]*rate.Limiter
	unauth *addrLimiter
	// refusals logs what the limits and authentication refuse.
	refusals *refusalLog
	bans     guard.Guard

	node   string
	bus    BusHealth
	health healthProbe
	tasks  BatchTasks // nil: no batch task routes
}

// New builds the API server.
func New(o Options) *Server {
	s := &Server{
		reg:     o.Registry,
		log:     o.Logger,
		byAK:    make(map[string]*Credential),
		byToken: make(map[string]*Credential),
		router:  o.Router,
		cmdWait: o.CommandTimeout,
		limits:  o.Limits.withDefaults(),
		bans:    o.Bans,
		node:    o.Node,
		bus:     o.Bus,
		tasks:   o.BatchTasks,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.refusals = &refusalLog{log: s.log}
	if s.cmdWait <= 0 {
		s.cmdWait = 20 * time.Second
	}
	for i := range o.Credentials {
		c := &o.Credentials[i]
		if c.AccessKey != "" {
			s.byAK[c.AccessKey] = c
		}
		if c.Token != "" {
			s.byToken[c.Token] = c
		}
	}
	if l := s.limits; l.Rate > 0 {
		s.byCred = make(map[*Credential]*rate.Limiter, len(o.Credentials))
		for i := range o.Credentials {
			s.byCred[&o.Credentials[i]] = rate.NewLimiter(rate.Limit(l.Rate), max(l.Burst, 1))
		}
	}
	s.unauth = newAddrLimiter(s.limits.UnauthenticatedRate, s.limits.UnauthenticatedBurst, maxTrackedAddrs)
	s.verifier = &aksk.Verifier{
		Lookup: func(ak string) ([]byte, bool) {
			c, ok := s.byAK[ak]
			if !ok {
				return nil, false
			}
			return []byte(c.SecretKey), true
		},
		MaxSkew: o.MaxClockSkew,
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.GET("/healthz", s.healthz)
	s.openAPIRoutes(e)
	v5 := e.Group("/v5/iot/:project_id", s.authenticate)
	s.productRoutes(v5)
	s.deviceRoutes(v5)
	s.certRoutes(v5)
	s.dataRoutes(v5)
	s.propertyRoutes(v5)
	s.tagRoutes(v5)
	s.groupRoutes(v5)
	s.packageRoutes(v5)
	s.messageRoutes(v5)
	s.registrationRoutes(e)
	s.asyncCommandRoutes(v5)
	s.eventRoutes(v5)
	s.routingRoutes(v5)
	s.banRoutes(v5)
	s.clusterRoutes(v5)
	s.batchTaskRoutes(v5)
	s.echo = e
	return s
}

// Echo exposes the router so other packages' routes (device-side HTTP
// registration, for instance) can share the listener.
func (s *Server) Echo() *echo.Echo { return s.echo }

// ServeHTTP makes the server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// SetReady flips /healthz to 200 once every listener is up.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }
