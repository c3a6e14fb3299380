package registry

import (
	"context"
	"errors"
	"testing"
)

func TestFlowControlPolicies(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	rule, err := r.AddRoutingRule(ctx, "proj", "", RoutingRule{Subject: RuleSubject{ResourceDeviceMessage, EventReport}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.AddRuleAction(ctx, "proj", RuleAction{RuleID: rule.ID, Channel: ChannelHTTP,
		Detail: ChannelDetail{HTTP: &HTTPForwarding{URL: "http://127.0.0.1:9/"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		p     FlowControlPolicy
		field string
	}{
		{"user default", FlowControlPolicy{}, ""},
		{"channel", FlowControlPolicy{Scope: FlowScopeChannel, ScopeValue: ChannelHTTP, Limit: 500}, ""},
		{"rule", FlowControlPolicy{Scope: FlowScopeRule, ScopeValue: rule.ID, Limit: 300}, ""},
		{"action", FlowControlPolicy{Scope: FlowScopeAction, ScopeValue: a.ID, Limit: 200}, ""},
		{"duplicate scope", FlowControlPolicy{Scope: FlowScopeUser}, "scope"},
		{"unknown scope", FlowControlPolicy{Scope: "TENANT"}, "scope"},
		{"user with value", FlowControlPolicy{Scope: FlowScopeUser, ScopeValue: "x"}, "scope_value"},
		{"unknown channel", FlowControlPolicy{Scope: FlowScopeChannel, ScopeValue: "AMQP_FORWARDING"}, "scope_value"},
		{"unknown rule", FlowControlPolicy{Scope: FlowScopeRule, ScopeValue: "nope"}, "scope_value"},
		{"unknown action", FlowControlPolicy{Scope: FlowScopeAction, ScopeValue: "nope"}, "scope_value"},
		{"limit high", FlowControlPolicy{Scope: FlowScopeChannel, ScopeValue: ChannelNATS, Limit: 1001}, "limit"},
		{"limit negative", FlowControlPolicy{Scope: FlowScopeChannel, ScopeValue: ChannelNATS, Limit: -1}, "limit"},
		{"bad name", FlowControlPolicy{Scope: FlowScopeChannel, ScopeValue: ChannelNATS, Name: "a<b"}, "policy_name"},
	} {
		_, err := r.AddFlowControlPolicy(ctx, "proj", tc.p)
		var ve *ValidationError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &ve) || ve.Field != tc.field):
			t.Errorf("%s: err %v, want invalid %s", tc.name, err, tc.field)
		}
	}
	ps, err := r.FlowControlPolicies(ctx, "proj")
	if err != nil || len(ps) != 4 {
		t.Fatalf("policies %v %v", ps, err)
	}
	if got := FlowLimit(ps, a); got != 200 {
		t.Errorf("the action's limit is %d, want the lowest, 200", got)
	}
	if got := FlowLimit(ps, &RuleAction{ID: "other", RuleID: "other", Channel: ChannelKafka}); got != 1000 {
		t.Errorf("another action's limit is %d, want the USER policy's 1000", got)
	}
	if other, _ := r.FlowControlPolicies(ctx, "other"); len(other) != 0 {
		t.Errorf("another project sees %v", other)
	}
	limit := 50
	if p, err := r.UpdateFlowControlPolicy(ctx, "proj", ps[0].ID, FlowPolicyChange{Limit: &limit}); err != nil || p.Limit != 50 {
		t.Errorf("update: %v %v", p, err)
	}
	// Deleting the rule deletes its action, and both their policies.
	if err := r.DeleteRoutingRule(ctx, "proj", rule.ID); err != nil {
		t.Fatal(err)
	}
	if ps, _ = r.FlowControlPolicies(ctx, "proj"); len(ps) != 2 {
		t.Errorf("policies after the rule's deletion: %v", ps)
	}
	if err := r.DeleteFlowControlPolicy(ctx, "proj", ps[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.FlowControlPolicy(ctx, "proj", ps[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted policy: %v", err)
	}
}
