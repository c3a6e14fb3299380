package registry

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/iotgate/iotgate/registry/kv"
)

// Flow-control policies (IoTDA's routing-rule flowcontrol-policy): the
// most messages per second an action delivers while it drains a backlog
// after a failure. A policy applies to all of a project's actions (scope
// USER), those of one channel, one rule, or one action; an action takes
// the lowest limit that applies to it, or the engine's drain rate when
// none does.

// Flow-control scopes.
const (
	FlowScopeUser    = "USER"
	FlowScopeChannel = "CHANNEL"
	FlowScopeRule    = "RULE"
	FlowScopeAction  = "ACTION"
)

// Flow-control limits (IoTDA's: 1 to 1,000 messages a second, 1,000 by
// default) and the policies a project may hold.
const (
	MaxFlowLimit              = 1000
	MaxFlowPoliciesPerProject = 100
	maxFlowPolicyName         = 256
	maxFlowPolicyDescription  = 256
)

// FlowControlPolicy bounds the drain rate of the actions in its scope.
type FlowControlPolicy struct {
	ID          string    `json:"id"`
	ProjectID   string    `json:"project"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Scope       string    `json:"scope"`
	ScopeValue  string    `json:"scope_value"`
	Limit       int       `json:"limit"`
	Created     time.Time `json:"created"`
}

// Applies reports whether the policy bounds action a.
func (p *FlowControlPolicy) Applies(a *RuleAction) bool {
	switch p.Scope {
	case FlowScopeUser:
		return true
	case FlowScopeChannel:
		return a.Channel == p.ScopeValue
	case FlowScopeRule:
		return a.RuleID == p.ScopeValue
	case FlowScopeAction:
		return a.ID == p.ScopeValue
	}
	return false
}

// FlowLimit is the lowest limit of the policies that apply to a; 0 when
// none does.
func FlowLimit(ps []*FlowControlPolicy, a *RuleAction) int {
	limit := 0
	for _, p := range ps {
		if p.Applies(a) && (limit == 0 || p.Limit < limit) {
			limit = p.Limit
		}
	}
	return limit
}

// FlowPolicyChange is an update of a policy; nil fields keep their value.
type FlowPolicyChange struct {
	Name, Description *string
	Limit             *int
}

func (r *Registry) validateFlowPolicy(rd Reader, p *FlowControlPolicy) error {
	if err := checkName("policy_name", p.Name, maxFlowPolicyName, false); err != nil {
		return err
	}
	if !utf8.ValidString(p.Description) || utf8.RuneCountInString(p.Description) > maxFlowPolicyDescription {
		return invalid("description", "must be valid UTF-8 of at most %d characters", maxFlowPolicyDescription)
	}
	if p.Limit < 1 || p.Limit > MaxFlowLimit {
		return invalid("limit", "must be 1 to %d (messages a second)", MaxFlowLimit)
	}
	switch p.Scope {
	case FlowScopeUser:
		if p.ScopeValue != "" {
			return invalid("scope_value", "must be empty with scope USER")
		}
	case FlowScopeChannel:
		switch p.ScopeValue {
		case ChannelHTTP, ChannelKafka, ChannelNATS:
		default:
			return invalid("scope_value", "must be a channel (%s, %s, %s) with scope CHANNEL", ChannelHTTP, ChannelKafka, ChannelNATS)
		}
	case FlowScopeRule:
		if _, err := getRule(rd, p.ProjectID, p.ScopeValue); errors.Is(err, ErrNotFound) {
			return invalid("scope_value", "no routing rule %q in this project", p.ScopeValue)
		} else if err != nil {
			return err
		}
	case FlowScopeAction:
		if _, err := rd.Get(ruleActionKey(p.ProjectID, p.ScopeValue)); errors.Is(err, kv.ErrNotFound) {
			return invalid("scope_value", "no rule action %q in this project", p.ScopeValue)
		} else if err != nil {
			return err
		}
	default:
		return invalid("scope", "must be USER, CHANNEL, RULE or ACTION")
	}
	return nil
}

// AddFlowControlPolicy creates a policy of project; one scope and value
// hold at most one policy.
func (r *Registry) AddFlowControlPolicy(ctx context.Context, project string, p FlowControlPolicy) (*FlowControlPolicy, error) {
	if p.Scope == "" {
		p.Scope = FlowScopeUser
	}
	if p.Limit == 0 {
		p.Limit = MaxFlowLimit
	}
	now := r.now().UTC()
	p.ID, p.ProjectID, p.Created = r.ids.Next(now), project, now
	err := r.write(ctx, func(w Writer) error {
		if err := r.validateFlowPolicy(w, &p); err != nil {
			return err
		}
		existing, err := scanFlowPolicies(w, project)
		if err != nil {
			return err
		}
		if len(existing) >= MaxFlowPoliciesPerProject {
			return fmt.Errorf("%w: a project has at most %d flow-control policies", ErrQuota, MaxFlowPoliciesPerProject)
		}
		for _, o := range existing {
			if o.Scope == p.Scope && o.ScopeValue == p.ScopeValue {
				return invalid("scope", "policy %s already bounds scope %s %s", o.ID, p.Scope, p.ScopeValue)
			}
		}
		return putFlowPolicy(w, &p)
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// FlowControlPolicy returns a policy of project.
func (r *Registry) FlowControlPolicy(ctx context.Context, project, id string) (*FlowControlPolicy, error) {
	var p *FlowControlPolicy
	err := r.view(ctx, func(rd Reader) error {
		var err error
		p, err = getFlowPolicy(rd, project, id)
		return err
	})
	return p, err
}

// FlowControlPolicies lists the project's policies, oldest first.
func (r *Registry) FlowControlPolicies(ctx context.Context, project string) ([]*FlowControlPolicy, error) {
	var out []*FlowControlPolicy
	err := r.view(ctx, func(rd Reader) error {
		var err error
		out, err = scanFlowPolicies(rd, project)
		return err
	})
	return out, err
}

// UpdateFlowControlPolicy changes a policy's name, description or limit.
func (r *Registry) UpdateFlowControlPolicy(ctx context.Context, project, id string, ch FlowPolicyChange) (*FlowControlPolicy, error) {
	var out *FlowControlPolicy
	err := r.write(ctx, func(w Writer) error {
		p, err := getFlowPolicy(w, project, id)
		if err != nil {
			return err
		}
		if ch.Name != nil {
			p.Name = *ch.Name
		}
		if ch.Description != nil {
			p.Description = *ch.Description
		}
		if ch.Limit != nil {
			p.Limit = *ch.Limit
		}
		if err := r.validateFlowPolicy(w, p); err != nil {
			return err
		}
		out = p
		return putFlowPolicy(w, p)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteFlowControlPolicy deletes a policy.
func (r *Registry) DeleteFlowControlPolicy(ctx context.Context, project, id string) error {
	return r.write(ctx, func(w Writer) error {
		if _, err := getFlowPolicy(w, project, id); err != nil {
			return err
		}
		return w.Delete(flowPolicyKey(project, id))
	})
}

// flowPolicyRecords stores the project's EntityFlowPolicy records.
var flowPolicyRecords = projectRecords[FlowControlPolicy]{fam: famFlowPolicy, kind: EntityFlowPolicy,
	ids:        func(p *FlowControlPolicy) (string, string) { return p.ProjectID, p.ID },
	setProject: func(p *FlowControlPolicy, project string) { p.ProjectID = project }}

func putFlowPolicy(w Writer, p *FlowControlPolicy) error { return flowPolicyRecords.put(w, p) }

func getFlowPolicy(rd Reader, project, id string) (*FlowControlPolicy, error) {
	return flowPolicyRecords.get(rd, project, id)
}

func scanFlowPolicies(rd Reader, project string) ([]*FlowControlPolicy, error) {
	return flowPolicyRecords.scan(rd, project)
}
