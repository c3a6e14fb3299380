package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// Forwarding flow-control policies (IoTDA's routing-rule
// flowcontrol-policy): how fast actions drain a backlog after a failure.

// codeFlowPolicyNotFound is not in the reference; chosen in IoTDA's
// numbering beside the routing codes and documented in the README.
const codeFlowPolicyNotFound = "IOTDA.014702"

// flowPolicyRegistry serves /routing-rule/flowcontrol-policy.
type flowPolicyRegistry interface {
	AddFlowControlPolicy(ctx context.Context, project string, p registry.FlowControlPolicy) (*registry.FlowControlPolicy, error)
	FlowControlPolicy(ctx context.Context, project, id string) (*registry.FlowControlPolicy, error)
	FlowControlPolicies(ctx context.Context, project string) ([]*registry.FlowControlPolicy, error)
	UpdateFlowControlPolicy(ctx context.Context, project, id string, ch registry.FlowPolicyChange) (*registry.FlowControlPolicy, error)
	DeleteFlowControlPolicy(ctx context.Context, project, id string) error
}

func (s *Server) flowPolicyRoutes(g *echo.Group) {
	g.POST("/routing-rule/flowcontrol-policy", s.createFlowPolicy)
	g.GET("/routing-rule/flowcontrol-policy", s.listFlowPolicies)
	g.GET("/routing-rule/flowcontrol-policy/:policy_id", s.showFlowPolicy)
	g.PUT("/routing-rule/flowcontrol-policy/:policy_id", s.updateFlowPolicy)
	g.DELETE("/routing-rule/flowcontrol-policy/:policy_id", s.deleteFlowPolicy)
}

// flowPolicyView is IoTDA's FlowControlPolicyInfo.
type flowPolicyView struct {
	PolicyID    string `json:"policy_id"`
	PolicyName  string `json:"policy_name"`
	Description string `json:"description"`
	Scope       string `json:"scope"`
	ScopeValue  string `json:"scope_value"`
	Limit       int    `json:"limit"`
}

func viewFlowPolicy(p *registry.FlowControlPolicy) flowPolicyView {
	return flowPolicyView{PolicyID: p.ID, PolicyName: p.Name, Description: p.Description, Scope: p.Scope,
		ScopeValue: p.ScopeValue, Limit: p.Limit}
}

// createFlowPolicy is POST /routing-rule/flowcontrol-policy (IoTDA's
// AddFlowControlPolicy: scope defaults to USER, limit to 1000).
func (s *Server) createFlowPolicy(c echo.Context) error {
	var b struct {
		PolicyName  string `json:"policy_name"`
		Description string `json:"description"`
		Scope       string `json:"scope"`
		ScopeValue  string `json:"scope_value"`
		Limit       *int   `json:"limit"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	p := registry.FlowControlPolicy{Name: b.PolicyName, Description: b.Description, Scope: b.Scope, ScopeValue: b.ScopeValue}
	if b.Limit != nil {
		if *b.Limit == 0 {
			return badInput("invalid limit: must be 1 to %d (messages a second)", registry.MaxFlowLimit)
		}
		p.Limit = *b.Limit
	}
	out, err := s.reg.AddFlowControlPolicy(c.Request().Context(), project(c), p)
	if err != nil {
		return flowPolicyError(err)
	}
	return c.JSON(http.StatusCreated, viewFlowPolicy(out))
}

func (s *Server) showFlowPolicy(c echo.Context) error {
	p, err := s.reg.FlowControlPolicy(c.Request().Context(), project(c), c.Param("policy_id"))
	if err != nil {
		return flowPolicyError(err)
	}
	return c.JSON(http.StatusOK, viewFlowPolicy(p))
}

// listFlowPolicies is GET /routing-rule/flowcontrol-policy, filtered by
// scope, scope_value and policy_name, newest first.
func (s *Server) listFlowPolicies(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	ps, err := s.reg.FlowControlPolicies(c.Request().Context(), project(c))
	if err != nil {
		return err
	}
	q := c.QueryParams()
	kept := ps[:0]
	for _, p := range ps {
		if (q.Get("scope") != "" && p.Scope != q.Get("scope")) || (q.Get("scope_value") != "" && p.ScopeValue != q.Get("scope_value")) ||
			(q.Get("policy_name") != "" && p.Name != q.Get("policy_name")) {
			continue
		}
		kept = append(kept, p)
	}
	ids := make([]string, len(kept))
	for i, p := range kept {
		ids[i] = p.ID
	}
	idx, info := pageOf(ids, pg)
	out := struct {
		Policies []flowPolicyView `json:"flowcontrol_policies"`
		pageInfo
	}{Policies: make([]flowPolicyView, 0, len(idx)), pageInfo: info}
	for _, i := range idx {
		out.Policies = append(out.Policies, viewFlowPolicy(kept[i]))
	}
	return c.JSON(http.StatusOK, out)
}

// updateFlowPolicy is PUT /routing-rule/flowcontrol-policy/{policy_id}
// (IoTDA's UpdateFlowControlPolicy: name, description, limit).
func (s *Server) updateFlowPolicy(c echo.Context) error {
	var b struct {
		PolicyName  *string `json:"policy_name"`
		Description *string `json:"description"`
		Limit       *int    `json:"limit"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	p, err := s.reg.UpdateFlowControlPolicy(c.Request().Context(), project(c), c.Param("policy_id"),
		registry.FlowPolicyChange{Name: b.PolicyName, Description: b.Description, Limit: b.Limit})
	if err != nil {
		return flowPolicyError(err)
	}
	return c.JSON(http.StatusOK, viewFlowPolicy(p))
}

func (s *Server) deleteFlowPolicy(c echo.Context) error {
	if err := s.reg.DeleteFlowControlPolicy(c.Request().Context(), project(c), c.Param("policy_id")); err != nil {
		return flowPolicyError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

func flowPolicyError(err error) error {
	var nf *registry.NotFoundError
	if errors.As(err, &nf) && nf.Kind == registry.EntityFlowPolicy {
		return &apiError{Status: http.StatusNotFound, Code: codeFlowPolicyNotFound, Msg: nf.Error()}
	}
	return err
}
