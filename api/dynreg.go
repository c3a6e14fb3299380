package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/alisign"
	"github.com/labstack/echo/v4"
)

// Alibaba's HTTPS dynamic registration: POST /auth/register/device with a
// form (productKey, deviceName, random, sign, signMethod), authenticated
// by the sign alone. Answers are HTTP 200 with Alibaba's body
// {"code":...,"data":...,"message":...}; the SDKs read the code.

// Alibaba device error codes for this call (reference §3).
const (
	aliOK            = 200
	aliBadParams     = 460
	aliProductAbsent = 6250
	aliDynRegOff     = 6288
	aliAlreadyActive = 6289
	aliBadSignMethod = 6292
	aliSignFailed    = 6600
	aliDeviceAbsent  = 6100
	aliDisabled      = 6204
	aliSystem        = 500
	aliThrottled     = 429 // Alibaba's "too many requests"
)

type aliReply struct {
	Code    int    `json:"code"`
	Data    any    `json:"data,omitempty"`
	Message string `json:"message"`
}

func (s *Server) registrationRoutes(e *echo.Echo) {
	e.POST("/auth/register/device", s.registerDevice)
}

func (s *Server) registerDevice(c echo.Context) error {
	reply := func(code int, msg string, data any) error {
		return c.JSON(http.StatusOK, aliReply{Code: code, Data: data, Message: msg})
	}
	// Every registration request costs a token of its address's
	// unauthenticated bucket, before the form is parsed or a sign checked.
	// Over it: Alibaba's 429 "too many requests", in the body of an HTTP
	// 200 like every other answer here (an SDK turns another status into
	// a transport error and never shows the code), with Retry-After.
	now, addr := time.Now(), clientAddr(c.Request().RemoteAddr)
	if ok, wait := s.unauth.take(addr, now); !ok {
		s.refusals.refused(now, "device registration refused: address over its unauthenticated rate", "addr", addr)
		setRetryAfter(c, wait)
		return reply(aliThrottled, "too many requests", nil)
	}
	c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10)
	if err := c.Request().ParseForm(); err != nil {
		return reply(aliBadParams, "request body is not a valid form: "+err.Error(), nil)
	}
	f := c.Request().PostForm
	pk, dn, random, sign := f.Get("productKey"), f.Get("deviceName"), f.Get("random"), f.Get("sign")
	for _, p := range []struct{ name, v string }{{"productKey", pk}, {"deviceName", dn}, {"random", random}, {"sign", sign}} {
		if p.v == "" {
			return reply(aliBadParams, "missing parameter "+p.name, nil)
		}
	}
	method := f.Get("signMethod")
	if method == "" {
		method = alisign.DefaultMethod
	}
	h, ok := alisign.Method(method)
	if !ok {
		return reply(aliBadSignMethod, "sign method "+method+" is not supported (hmacmd5, hmacsha1, hmacsha256)", nil)
	}
	mac, ok := alisign.Decode(sign, h)
	if !ok {
		return reply(aliSignFailed, "sign check failed", nil)
	}
	proof := alisign.RegistrationProof(h, pk, dn, random)
	d, err := s.reg.DynamicRegister(c.Request().Context(), pk, dn, func(p *registry.Product) bool {
		return p.MatchProductSecret(proof, mac)
	})
	var nf *registry.NotFoundError
	switch {
	case err == nil:
		s.log.Info("device registered dynamically", "product_id", pk, "node_id", dn, "device_id", d.DeviceID)
		return reply(aliOK, "success", map[string]string{"productKey": pk, "deviceName": dn, "deviceSecret": d.Auth.Secret})
	case errors.As(err, &nf) && nf.Kind == registry.EntityProduct:
		return reply(aliProductAbsent, "product not found", nil)
	case errors.As(err, &nf):
		return reply(aliDeviceAbsent, "device not found", nil)
	case errors.Is(err, registry.ErrSignature):
		return reply(aliSignFailed, "sign check failed", nil)
	case errors.Is(err, registry.ErrDynRegDisabled):
		return reply(aliDynRegOff, "dynamic registration is not enabled for the product", nil)
	case errors.Is(err, registry.ErrAlreadyActive):
		return reply(aliAlreadyActive, "device is already active", nil)
	case errors.Is(err, registry.ErrFrozen):
		return reply(aliDisabled, "device is disabled", nil)
	}
	s.log.Error("dynamic registration failed", "product_id", pk, "err", err)
	return reply(aliSystem, "system error", nil)
}
