package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// Forwarding backlog policies (IoTDA's routing-rule backlog-policy): how
// much of what a project's actions could not deliver they keep.

// codeBacklogPolicyNotFound is not in the reference; chosen in IoTDA's
// numbering beside the routing codes and documented in the README.
const codeBacklogPolicyNotFound = "IOTDA.014703"

// backlogPolicyRegistry serves /routing-rule/backlog-policy.
type backlogPolicyRegistry interface {
	AddBacklogPolicy(ctx context.Context, project string, p registry.NewBacklogPolicy) (*registry.BacklogPolicy, error)
	BacklogPolicy(ctx context.Context, project, id string) (*registry.BacklogPolicy, error)
	BacklogPolicies(ctx context.Context, project string) ([]*registry.BacklogPolicy, error)
	UpdateBacklogPolicy(ctx context.Context, project, id string, ch registry.BacklogPolicyChange) (*registry.BacklogPolicy, error)
	DeleteBacklogPolicy(ctx context.Context, project, id string) error
}

func (s *Server) backlogPolicyRoutes(g *echo.Group) {
	g.POST("/routing-rule/backlog-policy", s.createBacklogPolicy)
	g.GET("/routing-rule/backlog-policy", s.listBacklogPolicies)
	g.GET("/routing-rule/backlog-policy/:policy_id", s.showBacklogPolicy)
	g.PUT("/routing-rule/backlog-policy/:policy_id", s.updateBacklogPolicy)
	g.DELETE("/routing-rule/backlog-policy/:policy_id", s.deleteBacklogPolicy)
}

// backlogPolicyView is IoTDA's BacklogPolicyInfo.
type backlogPolicyView struct {
	PolicyID    string `json:"policy_id"`
	PolicyName  string `json:"policy_name"`
	Description string `json:"description"`
	BacklogSize int64  `json:"backlog_size"`
	BacklogTime int64  `json:"backlog_time"`
}

func viewBacklogPolicy(p *registry.BacklogPolicy) backlogPolicyView {
	return backlogPolicyView{PolicyID: p.ID, PolicyName: p.Name, Description: p.Description,
		BacklogSize: p.Size, BacklogTime: p.Time}
}

// backlogPolicyBody is IoTDA's AddBacklogPolicy and UpdateBacklogPolicy.
type backlogPolicyBody struct {
	PolicyName  *string `json:"policy_name"`
	Description *string `json:"description"`
	BacklogSize *int64  `json:"backlog_size"`
	BacklogTime *int64  `json:"backlog_time"`
}

// createBacklogPolicy is POST /routing-rule/backlog-policy (IoTDA's
// AddBacklogPolicy: 1073741823 bytes and 86399 s by default).
func (s *Server) createBacklogPolicy(c echo.Context) error {
	var b backlogPolicyBody
	if err := decode(c, &b); err != nil {
		return err
	}
	n := registry.NewBacklogPolicy{Size: b.BacklogSize, Time: b.BacklogTime}
	if b.PolicyName != nil {
		n.Name = *b.PolicyName
	}
	if b.Description != nil {
		n.Description = *b.Description
	}
	out, err := s.reg.AddBacklogPolicy(c.Request().Context(), project(c), n)
	if err != nil {
		return backlogPolicyError(err)
	}
	return c.JSON(http.StatusCreated, viewBacklogPolicy(out))
}

func (s *Server) showBacklogPolicy(c echo.Context) error {
	p, err := s.reg.BacklogPolicy(c.Request().Context(), project(c), c.Param("policy_id"))
	if err != nil {
		return backlogPolicyError(err)
	}
	return c.JSON(http.StatusOK, viewBacklogPolicy(p))
}

// listBacklogPolicies is GET /routing-rule/backlog-policy, filtered by
// policy_name, newest first.
func (s *Server) listBacklogPolicies(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	ps, err := s.reg.BacklogPolicies(c.Request().Context(), project(c))
	if err != nil {
		return err
	}
	name := c.QueryParam("policy_name")
	kept := ps[:0]
	for _, p := range ps {
		if name == "" || p.Name == name {
			kept = append(kept, p)
		}
	}
	ids := make([]string, len(kept))
	for i, p := range kept {
		ids[i] = p.ID
	}
	idx, info := pageOf(ids, pg)
	out := struct {
		Policies []backlogPolicyView `json:"backlog_policies"`
		pageInfo
	}{Policies: make([]backlogPolicyView, 0, len(idx)), pageInfo: info}
	for _, i := range idx {
		out.Policies = append(out.Policies, viewBacklogPolicy(kept[i]))
	}
	return c.JSON(http.StatusOK, out)
}

// updateBacklogPolicy is PUT /routing-rule/backlog-policy/{policy_id}.
func (s *Server) updateBacklogPolicy(c echo.Context) error {
	var b backlogPolicyBody
	if err := decode(c, &b); err != nil {
		return err
	}
	p, err := s.reg.UpdateBacklogPolicy(c.Request().Context(), project(c), c.Param("policy_id"),
		registry.BacklogPolicyChange{Name: b.PolicyName, Description: b.Description, Size: b.BacklogSize, Time: b.BacklogTime})
	if err != nil {
		return backlogPolicyError(err)
	}
	return c.JSON(http.StatusOK, viewBacklogPolicy(p))
}

func (s *Server) deleteBacklogPolicy(c echo.Context) error {
	if err := s.reg.DeleteBacklogPolicy(c.Request().Context(), project(c), c.Param("policy_id")); err != nil {
		return backlogPolicyError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

func backlogPolicyError(err error) error {
	var nf *registry.NotFoundError
	if errors.As(err, &nf) && nf.Kind == registry.EntityBacklogPolicy {
		return &apiError{Status: http.StatusNotFound, Code: codeBacklogPolicyNotFound, Msg: nf.Error()}
	}
	return err
}
