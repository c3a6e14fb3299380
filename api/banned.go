package api

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/iotgate/iotgate/registry/guard"
)

// The ban list (our extension of the IoTDA API; README "Ban list"): the
// automatic bans the guard adds (failed authentications, flapping) and
// manual ones, by identity or by address prefix. Bans are platform-wide:
// every listener of every protocol enforces them, whatever the project
// in the path.
func (s *Server) banRoutes(g *echo.Group) {
	if s.bans == nil {
		return
	}
	g.GET("/banned", s.listBans)
	g.POST("/banned", s.addBan)
	g.DELETE("/banned", s.deleteBan)
}

// Error codes of the ban list, in IoTDA's numbering (README).
const (
	codeBanNotFound = "IOTDA.015000"
	codeBanListFull = "IOTDA.015001"
)

// Ban types: what a ban's value is.
const (
	banIdentity = "identity"
	banAddress  = "address"
)

// Bounds of a manual ban.
const (
	maxBanValue  = 256
	maxBanReason = 256
	// maxBanDuration is ten years: "for good" is an absent duration.
	maxBanDuration = 10 * 365 * 24 * 3600
)

type banView struct {
	Type       string `json:"type"`
	Value      string `json:"value"`
	Reason     string `json:"reason"`
	Source     string `json:"source"`
	CreateTime string `json:"create_time"`
	// ExpireTime is absent for a ban that never lifts.
	ExpireTime string `json:"expire_time,omitempty"`
}

func viewBan(b guard.Ban) banView {
	v := banView{Type: banIdentity, Value: b.Identity, Reason: b.Reason, Source: string(b.Source),
		CreateTime: compact(b.Created), ExpireTime: compact(b.Expires)}
	if b.Identity == "" {
		v.Type, v.Value = banAddress, b.Prefix.String()
	}
	return v
}

// listBans lists the bans in force, oldest first: limit 1–50 (default
// 10) from offset (default 0), optionally only one type or source.
func (s *Server) listBans(c echo.Context) error {
	limit, offset := 10, 0
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			return &apiError{Status: http.StatusBadRequest, Code: codeLimitRange, Msg: "invalid limit: must be an integer from 1 to 50"}
		}
		limit = n
	}
	if v := c.QueryParam("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badInput("invalid offset: must be a non-negative integer")
		}
		offset = n
	}
	typ, source := c.QueryParam("type"), c.QueryParam("source")
	if typ != "" && typ != banIdentity && typ != banAddress {
		return badInput("invalid type: must be identity or address")
	}
	if source != "" && source != string(guard.SourceAuto) && source != string(guard.SourceManual) {
		return badInput("invalid source: must be auto or manual")
	}
	bans, err := s.bans.Bans(c.Request().Context())
	if err != nil {
		return err
	}
	out := struct {
		Banned []banView `json:"banned"`
		Page   pageInfo  `json:"page"`
	}{Banned: []banView{}}
	for _, b := range bans {
		v := viewBan(b)
		if (typ != "" && v.Type != typ) || (source != "" && v.Source != source) {
			continue
		}
		if out.Page.Count >= int64(offset) && len(out.Banned) < limit {
			out.Banned = append(out.Banned, v)
		}
		out.Page.Count++
	}
	return c.JSON(http.StatusOK, out)
}

// addBan adds (or replaces) a manual ban: {"type", "value", "reason",
// "duration" (seconds; absent: until deleted)}.
func (s *Server) addBan(c echo.Context) error {
	var b struct {
		Type     string `json:"type"`
		Value    string `json:"value"`
		Reason   string `json:"reason"`
		Duration *int64 `json:"duration"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	t, err := banTarget(b.Type, b.Value)
	if err != nil {
		return err
	}
	if len(b.Reason) > maxBanReason {
		return badInput("invalid reason: at most %d characters", maxBanReason)
	}
	ban := guard.Ban{Target: t, Reason: b.Reason, Source: guard.SourceManual}
	if b.Duration != nil {
		if *b.Duration < 1 || *b.Duration > maxBanDuration {
			return badInput("invalid duration: must be from 1 to %d seconds", maxBanDuration)
		}
		ban.Expires = time.Now().Add(time.Duration(*b.Duration) * time.Second)
	}
	ctx := c.Request().Context()
	if err := s.bans.Ban(ctx, ban); err != nil {
		return banError(err)
	}
	s.log.Info("manual ban added", "target", t.String(), "reason", b.Reason, "by_project", project(c))
	// Answer with the ban as stored (its prefix masked, its times).
	bans, err := s.bans.Bans(ctx)
	if err != nil {
		return err
	}
	for _, x := range bans {
		if x.Target == normalized(t) {
			return c.JSON(http.StatusCreated, viewBan(x))
		}
	}
	return c.JSON(http.StatusCreated, viewBan(ban))
}

// deleteBan lifts the ban of ?type=…&value=… (automatic or manual).
func (s *Server) deleteBan(c echo.Context) error {
	t, err := banTarget(c.QueryParam("type"), c.QueryParam("value"))
	if err != nil {
		return err
	}
	if err := s.bans.Unban(c.Request().Context(), t); err != nil {
		return banError(err)
	}
	s.log.Info("ban lifted", "target", t.String(), "by_project", project(c))
	return c.NoContent(http.StatusNoContent)
}

// banTarget reads a ban's type and value: an identity, or an address as
// an IP address or a CIDR prefix.
func banTarget(typ, value string) (guard.Target, error) {
	if value == "" {
		return guard.Target{}, badInput("invalid value: is required")
	}
	if len(value) > maxBanValue {
		return guard.Target{}, badInput("invalid value: at most %d characters", maxBanValue)
	}
	switch typ {
	case banIdentity:
		return guard.Target{Identity: value}, nil
	case banAddress:
		if !strings.Contains(value, "/") {
			a, err := netip.ParseAddr(value)
			if err != nil {
				return guard.Target{}, badInput("invalid value: %q is not an IP address or CIDR prefix", value)
			}
			return guard.Target{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
		}
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return guard.Target{}, badInput("invalid value: %q is not an IP address or CIDR prefix", value)
		}
		return guard.Target{Prefix: p}, nil
	case "":
		return guard.Target{}, badInput("invalid type: is required (identity or address)")
	}
	return guard.Target{}, badInput("invalid type: must be identity or address")
}

// normalized is t as the ban list stores it: an IPv4-mapped address
// unmapped, a prefix masked.
func normalized(t guard.Target) guard.Target {
	if !t.Prefix.IsValid() {
		return t
	}
	a, bits := t.Prefix.Addr(), t.Prefix.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	p, _ := a.Prefix(bits)
	return guard.Target{Prefix: p}
}

func banError(err error) error {
	var ie *guard.InvalidBanError
	switch {
	case errors.As(err, &ie):
		return badInput("invalid %s: %s", ie.Field, ie.Problem)
	case errors.Is(err, guard.ErrNotBanned):
		return &apiError{Status: http.StatusNotFound, Code: codeBanNotFound, Msg: "no such ban"}
	case errors.Is(err, guard.ErrFull):
		return &apiError{Status: http.StatusBadRequest, Code: codeBanListFull, Msg: "the ban list holds the most manual bans it may"}
	}
	return err
}
