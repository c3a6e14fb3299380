package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/routing"
)

// Routing rules (IoTDA's data forwarding): a rule selects a project's
// events by subject (resource and event) and an optional where
// condition; its actions (ruleactions.go) push what it selects to a
// destination. The delivery engine that reads the event stream for each
// action lives outside the domain (package forwarding).

// Routing limits; IoTDA does not publish its own, these are ours
// (README, "Forwarding data").
const (
	MaxRulesPerProject = 100
	MaxActionsPerRule  = 10
	maxRuleName        = 256
	maxRuleDescription = 256
)

// Rule scopes (IoTDA's app_type). iotgate has one resource space per
// project, so both select the project's events.
const (
	AppTypeGlobal = "GLOBAL"
	AppTypeApp    = "APP"
)

// RuleSubject is what events a rule selects.
type RuleSubject struct {
	Resource string `json:"resource"`
	Event    string `json:"event"`
}

// subjects are the resource/event pairs the event stream records.
var subjects = map[RuleSubject]bool{
	{ResourceDevice, EventCreate}: true, {ResourceDevice, EventUpdate}: true, {ResourceDevice, EventDelete}: true,
	{ResourceDeviceStatus, EventUpdate}: true, {ResourceDeviceMessage, EventReport}: true,
	{ResourceDeviceProperty, EventReport}: true, {ResourceDeviceCommandStatus, EventUpdate}: true,
	{ResourceDeviceMessageStatus, EventUpdate}: true, {ResourceDeviceUpgradeStatus, EventUpdate}: true,
}

// RoutingRule is a forwarding rule of a project.
type RoutingRule struct {
	ID          string      `json:"id"`
	ProjectID   string      `json:"project"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Subject     RuleSubject `json:"subject"`
	AppType     string      `json:"app_type"`
	// Select is what of the envelope is pushed ("" or "*": all of it),
	// in the language of package routing.
	Select string `json:"select"`
	// Where is the rule's condition in the language of package routing.
	Where   string    `json:"where"`
	Active  bool      `json:"active"`
	Created time.Time `json:"created"`
}

// Matches reports whether an event falls under the rule's subject.
func (r *RoutingRule) Matches(ev *Event) bool {
	return ev.Resource == r.Subject.Resource && ev.Event == r.Subject.Event
}

// Condition compiles the rule's where condition (valid once stored).
func (r *RoutingRule) Condition() (routing.Condition, error) { return routing.Parse(r.Where) }

// Projection compiles the rule's select (valid once stored).
func (r *RoutingRule) Projection() (routing.Projection, error) { return routing.ParseSelect(r.Select) }

// RuleChange is an update of a rule; nil fields keep their value.
type RuleChange struct {
	Name, Description, Select, Where *string
	Active                           *bool
}

func validateRule(r *RoutingRule) error {
	if err := checkName("rule_name", r.Name, maxRuleName, false); err != nil {
		return err
	}
	if !utf8.ValidString(r.Description) {
		return invalid("description", "is not valid UTF-8")
	}
	if utf8.RuneCountInString(r.Description) > maxRuleDescription {
		return invalid("description", "must be at most %d characters", maxRuleDescription)
	}
	if r.Subject.Resource == "" {
		return invalid("subject.resource", "is required")
	}
	if r.Subject.Event == "" {
		return invalid("subject.event", "is required")
	}
	if !subjects[r.Subject] {
		return invalid("subject", "%s/%s is not a subject iotgate forwards; supported: device/create, device/update, device/delete, device.status/update, device.message/report, device.property/report, device.command.status/update, device.message.status/update, device.upgrade.status/update",
			r.Subject.Resource, r.Subject.Event)
	}
	switch r.AppType {
	case AppTypeGlobal, AppTypeApp:
	default:
		return invalid("app_type", "must be GLOBAL or APP")
	}
	if _, err := routing.ParseSelect(r.Select); err != nil {
		return invalid("select", "%v", err)
	}
	if _, err := routing.Parse(r.Where); err != nil {
		return invalid("where", "%v", err)
	}
	return nil
}

// AddRoutingRule creates a rule of project. appID, when given, must be
// the project's (its one resource space).
func (r *Registry) AddRoutingRule(ctx context.Context, project, appID string, rule RoutingRule) (*RoutingRule, error) {
	if rule.AppType == "" {
		rule.AppType = AppTypeGlobal
	}
	if appID != "" && appID != project {
		return nil, invalid("app_id", "must be this project's id %q: iotgate has one resource space per project", project)
	}
	if err := validateRule(&rule); err != nil {
		return nil, err
	}
	now := r.now().UTC()
	rule.ID, rule.ProjectID, rule.Created = r.ids.Next(now), project, now
	err := r.write(ctx, func(w Writer) error {
		n := 0
		if err := w.Scan(prefixKey(famRoutingRule, project), nil, false, func(_, _ []byte) (bool, error) {
			n++
			return true, nil
		}); err != nil {
			return err
		}
		if n >= MaxRulesPerProject {
			return fmt.Errorf("%w: a project has at most %d routing rules", ErrQuota, MaxRulesPerProject)
		}
		return putRule(w, &rule)
	})
	if err != nil {
		return nil, err
	}
	return &rule, nil
}

// RoutingRule returns a rule of project.
func (r *Registry) RoutingRule(ctx context.Context, project, id string) (*RoutingRule, error) {
	var rule *RoutingRule
	err := r.view(ctx, func(rd Reader) error {
		var err error
		rule, err = getRule(rd, project, id)
		return err
	})
	return rule, err
}

// RoutingRules lists the project's rules, oldest first.
func (r *Registry) RoutingRules(ctx context.Context, project string) ([]*RoutingRule, error) {
	var out []*RoutingRule
	err := r.view(ctx, func(rd Reader) error {
		out = out[:0]
		return rd.Scan(prefixKey(famRoutingRule, project), nil, false, func(k, v []byte) (bool, error) {
			rule, err := decodeRule(project, v)
			if err != nil {
				return false, err
			}
			out = append(out, rule)
			return true, nil
		})
	})
	return out, err
}

// UpdateRoutingRule changes a rule's name, description, condition or
// activity; its subject is fixed at creation (as IoTDA's).
func (r *Registry) UpdateRoutingRule(ctx context.Context, project, id string, ch RuleChange) (*RoutingRule, error) {
	var out *RoutingRule
	err := r.write(ctx, func(w Writer) error {
		rule, err := getRule(w, project, id)
		if err != nil {
			return err
		}
		for _, f := range []struct {
			dst *string
			src *string
		}{{&rule.Name, ch.Name}, {&rule.Description, ch.Description}, {&rule.Select, ch.Select}, {&rule.Where, ch.Where}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		if ch.Active != nil {
			rule.Active = *ch.Active
		}
		if err := validateRule(rule); err != nil {
			return err
		}
		out = rule
		return putRule(w, rule)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteRoutingRule deletes a rule with its actions and their cursors
// (what only they held of the event stream is trimmed at the next sweep).
func (r *Registry) DeleteRoutingRule(ctx context.Context, project, id string) error {
	return r.write(ctx, func(w Writer) error {
		if _, err := getRule(w, project, id); err != nil {
			return err
		}
		actions, err := scanActions(w, prefixKey(famRuleAction, project))
		if err != nil {
			return err
		}
		for _, a := range actions {
			if a.RuleID != id {
				continue
			}
			if err := deleteAction(w, a); err != nil {
				return err
			}
		}
		if err := deleteScopedPolicies(w, project, FlowScopeRule, id); err != nil {
			return err
		}
		return w.Delete(routingRuleKey(project, id))
	})
}

func putRule(w Writer, rule *RoutingRule) error {
	b, err := json.Marshal(rule)
	if err != nil {
		return fmt.Errorf("encode routing rule %s: %w", rule.ID, err)
	}
	return w.Set(routingRuleKey(rule.ProjectID, rule.ID), b)
}

func getRule(rd Reader, project, id string) (*RoutingRule, error) {
	v, err := rd.Get(routingRuleKey(project, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityRoutingRule, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read routing rule %s: %w", id, err)
	}
	return decodeRule(project, v)
}

func decodeRule(project string, v []byte) (*RoutingRule, error) {
	rule := &RoutingRule{}
	if err := json.Unmarshal(v, rule); err != nil {
		return nil, fmt.Errorf("decode routing rule of %s: %w", project, err)
	}
	rule.ProjectID = project
	return rule, nil
}
