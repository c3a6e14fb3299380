// Package api serves the IoTDA v5 REST API (products, devices, device CA
// certificates, device data and commands) over echo. It is an adapter onto
// the registry and reaches devices only through the registry's Sender
// interfaces, never through a protocol package.
package api

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/api/aksk"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/labstack/echo/v4"
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
	Registry    *registry.Registry
	Credentials []Credential
	// MaxClockSkew bounds X-Sdk-Date; zero means 15 minutes.
	MaxClockSkew time.Duration
	Logger       *slog.Logger
	// Commands and Messages reach connected devices; nil answers
	// "not online" for every device.
	Commands registry.CommandSender
	Messages registry.MessageSender
	// CommandTimeout is how long a synchronous command waits; zero means
	// IoTDA's 20 s.
	CommandTimeout time.Duration
	// AsyncCommands delivers queued asynchronous commands (LwM2M); nil
	// keeps them PENDING until they expire and refuses "immediately".
	AsyncCommands registry.AsyncCommandDispatcher
	// Bans is the ban list served at /banned (banned.go); nil: no such
	// routes.
	Bans guard.Guard
}

// Server is the REST API.
type Server struct {
	reg      *registry.Registry
	log      *slog.Logger
	echo     *echo.Echo
	verifier *aksk.Verifier
	byAK     map[string]*Credential
	byToken  map[string]*Credential
	ready    atomic.Bool
	commands registry.CommandSender
	messages registry.MessageSender
	cmdWait  time.Duration

	asyncCommands registry.AsyncCommandDispatcher
	bans          guard.Guard
}

// maxBody bounds request bodies (IoTDA's largest are 1 MB messages).
const maxBody = 2 << 20

// New builds the API server.
func New(o Options) *Server {
	s := &Server{
		reg:      o.Registry,
		log:      o.Logger,
		byAK:     make(map[string]*Credential),
		byToken:  make(map[string]*Credential),
		commands: o.Commands,
		messages: o.Messages,
		cmdWait:  o.CommandTimeout,

		asyncCommands: o.AsyncCommands,
		bans:          o.Bans,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
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
	v5 := e.Group("/v5/iot/:project_id", s.authenticate)
	s.productRoutes(v5)
	s.deviceRoutes(v5)
	s.certRoutes(v5)
	s.dataRoutes(v5)
	s.registrationRoutes(e)
	s.asyncCommandRoutes(v5)
	s.banRoutes(v5)
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

func (s *Server) healthz(c echo.Context) error {
	if !s.ready.Load() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "starting"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}
