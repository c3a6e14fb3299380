package api

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strconv"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// Data forwarding (IoTDA's routing rules and rule actions); the delivery
// itself is the forwarding engine's, wired by cmd/iotgate.

// Codes not in the reference; chosen in IoTDA's numbering and documented
// in the README.
const (
	codeRuleNotFound   = "IOTDA.014700"
	codeActionNotFound = "IOTDA.014701"
)

// routingRegistry serves /routing-rule.
type routingRegistry interface {
	AddRoutingRule(ctx context.Context, project, appID string, r registry.RoutingRule) (*registry.RoutingRule, error)
	RoutingRule(ctx context.Context, project, id string) (*registry.RoutingRule, error)
	RoutingRules(ctx context.Context, project string) ([]*registry.RoutingRule, error)
	UpdateRoutingRule(ctx context.Context, project, id string, ch registry.RuleChange) (*registry.RoutingRule, error)
	DeleteRoutingRule(ctx context.Context, project, id string) error
	AddRuleAction(ctx context.Context, project string, a registry.RuleAction) (*registry.RuleAction, error)
	RuleAction(ctx context.Context, project, id string) (*registry.RuleAction, error)
	RuleActions(ctx context.Context, project string) ([]*registry.RuleAction, error)
	UpdateRuleAction(ctx context.Context, project, id string, ch registry.ActionChange) (*registry.RuleAction, error)
	DeleteRuleAction(ctx context.Context, project, id string) error
}

func (s *Server) routingRoutes(g *echo.Group) {
	g.POST("/routing-rule/rules", s.createRule)
	g.GET("/routing-rule/rules", s.listRules)
	g.GET("/routing-rule/rules/:rule_id", s.showRule)
	g.PUT("/routing-rule/rules/:rule_id", s.updateRule)
	g.DELETE("/routing-rule/rules/:rule_id", s.deleteRule)
	g.POST("/routing-rule/actions", s.createAction)
	g.GET("/routing-rule/actions", s.listActions)
	g.GET("/routing-rule/actions/:action_id", s.showAction)
	g.PUT("/routing-rule/actions/:action_id", s.updateAction)
	g.DELETE("/routing-rule/actions/:action_id", s.deleteAction)
	s.flowPolicyRoutes(g)
	s.backlogPolicyRoutes(g)
}

type subjectView struct {
	Resource string `json:"resource"`
	Event    string `json:"event"`
}

// ruleView is IoTDA's RoutingRule.
type ruleView struct {
	RuleID      string      `json:"rule_id"`
	RuleName    string      `json:"rule_name"`
	Description string      `json:"description"`
	Subject     subjectView `json:"subject"`
	AppType     string      `json:"app_type"`
	AppID       string      `json:"app_id"`
	Select      string      `json:"select"`
	Where       string      `json:"where"`
	Active      bool        `json:"active"`
}

func viewRule(r *registry.RoutingRule) ruleView {
	return ruleView{RuleID: r.ID, RuleName: r.Name, Description: r.Description,
		Subject: subjectView{r.Subject.Resource, r.Subject.Event}, AppType: r.AppType, AppID: r.ProjectID,
		Select: r.Select, Where: r.Where, Active: r.Active}
}

// actionView is IoTDA's RoutingRuleAction. Secrets (an HTTP token, a
// Kafka password) are write-only: never returned.
type actionView struct {
	ActionID      string                 `json:"action_id"`
	RuleID        string                 `json:"rule_id"`
	AppID         string                 `json:"app_id"`
	Channel       string                 `json:"channel"`
	ChannelDetail registry.ChannelDetail `json:"channel_detail"`
	// Backlog (iotgate's, shown by GET of one action): what the action's
	// backlog bounds dropped undelivered.
	Backlog *backlogView `json:"backlog,omitempty"`
}

type backlogView struct {
	Dropped        uint64 `json:"dropped"`
	LastDropTime   string `json:"last_drop_time,omitempty"`
	LastDropReason string `json:"last_drop_reason,omitempty"`
}

func viewAction(a *registry.RuleAction) actionView {
	d := a.Detail
	if d.HTTP != nil {
		h := *d.HTTP
		h.Token = ""
		d.HTTP = &h
	}
	if d.Kafka != nil {
		k := *d.Kafka
		k.Password = ""
		d.Kafka = &k
	}
	return actionView{ActionID: a.ID, RuleID: a.RuleID, AppID: a.ProjectID, Channel: a.Channel, ChannelDetail: d}
}

// createRule is POST /routing-rule/rules (IoTDA's AddRuleReq; active is
// accepted too, and is false when absent, as IoTDA creates rules).
func (s *Server) createRule(c echo.Context) error {
	var b struct {
		RuleName    string       `json:"rule_name"`
		Description string       `json:"description"`
		Subject     *subjectView `json:"subject"`
		AppType     string       `json:"app_type"`
		AppID       string       `json:"app_id"`
		Select      string       `json:"select"`
		Where       string       `json:"where"`
		Active      bool         `json:"active"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Subject == nil {
		return badInput("invalid subject: is required")
	}
	r, err := s.reg.AddRoutingRule(c.Request().Context(), project(c), b.AppID, registry.RoutingRule{Name: b.RuleName,
		Description: b.Description, Subject: registry.RuleSubject{Resource: b.Subject.Resource, Event: b.Subject.Event},
		AppType: b.AppType, Select: b.Select, Where: b.Where, Active: b.Active})
	if err != nil {
		return routingError(err)
	}
	return c.JSON(http.StatusCreated, viewRule(r))
}

func (s *Server) showRule(c echo.Context) error {
	r, err := s.reg.RoutingRule(c.Request().Context(), project(c), c.Param("rule_id"))
	if err != nil {
		return routingError(err)
	}
	return c.JSON(http.StatusOK, viewRule(r))
}

// listRules is GET /routing-rule/rules, filtered by resource, event,
// app_type, app_id, rule_name and active, newest first (IoTDA's paging).
func (s *Server) listRules(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	var active *bool
	if v := c.QueryParam("active"); v != "" {
		a, err := strconv.ParseBool(v)
		if err != nil {
			return badInput("invalid active: must be true or false")
		}
		active = &a
	}
	rules, err := s.reg.RoutingRules(c.Request().Context(), project(c))
	if err != nil {
		return err
	}
	q := c.QueryParams()
	kept := rules[:0]
	for _, r := range rules {
		if (q.Get("resource") != "" && r.Subject.Resource != q.Get("resource")) ||
			(q.Get("event") != "" && r.Subject.Event != q.Get("event")) ||
			(q.Get("app_type") != "" && r.AppType != q.Get("app_type")) ||
			(q.Get("app_id") != "" && q.Get("app_id") != project(c)) ||
			(q.Get("rule_name") != "" && r.Name != q.Get("rule_name")) ||
			(active != nil && r.Active != *active) {
			continue
		}
		kept = append(kept, r)
	}
	ids := make([]string, len(kept))
	for i, r := range kept {
		ids[i] = r.ID
	}
	idx, info := pageOf(ids, pg)
	out := struct {
		Rules []ruleView `json:"rules"`
		pageInfo
	}{Rules: make([]ruleView, 0, len(idx)), pageInfo: info}
	for _, i := range idx {
		out.Rules = append(out.Rules, viewRule(kept[i]))
	}
	return c.JSON(http.StatusOK, out)
}

// pageOf pages records by id, newest (highest id) first: the indexes in
// ids of those of pg, and the page's count and marker.
func pageOf(ids []string, pg registry.Page) ([]int, pageInfo) {
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return ids[order[a]] > ids[order[b]] })
	info := pageInfo{Count: int64(len(ids))}
	var out []int
	skip := pg.Offset
	for _, i := range order {
		if pg.Marker != "" && ids[i] >= pg.Marker {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		if len(out) == pg.Limit {
			break
		}
		out = append(out, i)
		info.Marker = ids[i]
	}
	return out, info
}

// updateRule is PUT /routing-rule/rules/{rule_id} (IoTDA's UpdateRuleReq).
func (s *Server) updateRule(c echo.Context) error {
	var b struct {
		RuleName    *string `json:"rule_name"`
		Description *string `json:"description"`
		Select      *string `json:"select"`
		Where       *string `json:"where"`
		Active      *bool   `json:"active"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	r, err := s.reg.UpdateRoutingRule(c.Request().Context(), project(c), c.Param("rule_id"), registry.RuleChange{
		Name: b.RuleName, Description: b.Description, Select: b.Select, Where: b.Where, Active: b.Active})
	if err != nil {
		return routingError(err)
	}
	return c.JSON(http.StatusOK, viewRule(r))
}

func (s *Server) deleteRule(c echo.Context) error {
	if err := s.reg.DeleteRoutingRule(c.Request().Context(), project(c), c.Param("rule_id")); err != nil {
		return routingError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// createAction is POST /routing-rule/actions (IoTDA's AddActionReq).
func (s *Server) createAction(c echo.Context) error {
	var b struct {
		RuleID        string                  `json:"rule_id"`
		Channel       string                  `json:"channel"`
		ChannelDetail *registry.ChannelDetail `json:"channel_detail"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.ChannelDetail == nil {
		return badInput("invalid channel_detail: is required")
	}
	a, err := s.reg.AddRuleAction(c.Request().Context(), project(c), registry.RuleAction{RuleID: b.RuleID,
		Channel: b.Channel, Detail: *b.ChannelDetail})
	if err != nil {
		return routingError(err)
	}
	return c.JSON(http.StatusCreated, viewAction(a))
}

func (s *Server) showAction(c echo.Context) error {
	ctx := c.Request().Context()
	a, err := s.reg.RuleAction(ctx, project(c), c.Param("action_id"))
	if err != nil {
		return routingError(err)
	}
	v := viewAction(a)
	con, err := s.reg.EventConsumer(ctx, a.ProjectID, registry.ActionConsumer(a.ID))
	switch {
	case err == nil:
		v.Backlog = &backlogView{Dropped: con.Dropped, LastDropReason: con.LastDropReason}
		if !con.LastDrop.IsZero() {
			v.Backlog.LastDropTime = con.LastDrop.UTC().Format(compactTime)
		}
	case !errors.Is(err, registry.ErrNotFound):
		return routingError(err)
	}
	return c.JSON(http.StatusOK, v)
}

// listActions is GET /routing-rule/actions, filtered by rule_id,
// channel and app_id, newest first.
func (s *Server) listActions(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	actions, err := s.reg.RuleActions(c.Request().Context(), project(c))
	if err != nil {
		return err
	}
	q := c.QueryParams()
	kept := actions[:0]
	for _, a := range actions {
		if (q.Get("rule_id") != "" && a.RuleID != q.Get("rule_id")) ||
			(q.Get("channel") != "" && a.Channel != q.Get("channel")) ||
			(q.Get("app_id") != "" && q.Get("app_id") != project(c)) {
			continue
		}
		kept = append(kept, a)
	}
	ids := make([]string, len(kept))
	for i, a := range kept {
		ids[i] = a.ID
	}
	idx, info := pageOf(ids, pg)
	out := struct {
		Actions []actionView `json:"actions"`
		pageInfo
	}{Actions: make([]actionView, 0, len(idx)), pageInfo: info}
	for _, i := range idx {
		out.Actions = append(out.Actions, viewAction(kept[i]))
	}
	return c.JSON(http.StatusOK, out)
}

// updateAction is PUT /routing-rule/actions/{action_id} (IoTDA's
// UpdateActionReq). A secret left out of a new channel_detail of the same
// channel keeps its stored value, since responses never show it.
func (s *Server) updateAction(c echo.Context) error {
	var b struct {
		Channel       *string                 `json:"channel"`
		ChannelDetail *registry.ChannelDetail `json:"channel_detail"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if b.ChannelDetail != nil {
		cur, err := s.reg.RuleAction(ctx, project(c), c.Param("action_id"))
		if err != nil {
			return routingError(err)
		}
		d := b.ChannelDetail
		if d.HTTP != nil && cur.Detail.HTTP != nil && d.HTTP.Token == "" && d.HTTP.SignatureEnable {
			d.HTTP.Token = cur.Detail.HTTP.Token
		}
		if d.Kafka != nil && cur.Detail.Kafka != nil && d.Kafka.Password == "" && d.Kafka.Username != "" {
			d.Kafka.Password = cur.Detail.Kafka.Password
		}
	}
	a, err := s.reg.UpdateRuleAction(ctx, project(c), c.Param("action_id"), registry.ActionChange{
		Channel: b.Channel, Detail: b.ChannelDetail})
	if err != nil {
		return routingError(err)
	}
	return c.JSON(http.StatusOK, viewAction(a))
}

func (s *Server) deleteAction(c echo.Context) error {
	if err := s.reg.DeleteRuleAction(c.Request().Context(), project(c), c.Param("action_id")); err != nil {
		return routingError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// routingError maps a missing rule or action to its code; others go to
// the shared mapping.
func routingError(err error) error {
	var nf *registry.NotFoundError
	if errors.As(err, &nf) {
		switch nf.Kind {
		case registry.EntityRoutingRule:
			return &apiError{Status: http.StatusNotFound, Code: codeRuleNotFound, Msg: nf.Error()}
		case registry.EntityRuleAction:
			return &apiError{Status: http.StatusNotFound, Code: codeActionNotFound, Msg: nf.Error()}
		}
	}
	return err
}
