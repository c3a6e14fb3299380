package test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	iotda "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// Huawei's unmodified Go SDK manages routing rules and actions: its
// request and response models are the API's shapes.
func TestHuaweiSDKRoutingRules(t *testing.T) {
	g := StartGate(t, GateOptions{})
	cred := basic.NewCredentialsBuilder().WithAk(g.AK).WithSk(g.SK).WithProjectId(g.Project).Build()
	c := iotda.NewIoTDAClient(iotda.IoTDAClientBuilder().WithEndpoint(g.API).WithHttpConfig(g.sdkHTTPConfig(nil)).
		WithCredential(cred).Build())
	str := func(s string) *string { return &s }
	rule, err := c.CreateRoutingRule(&model.CreateRoutingRuleRequest{Body: &model.AddRuleReq{RuleName: str("sdk rule"),
		Subject: &model.RoutingRuleSubject{Resource: "device.property", Event: "report"}, AppType: str("GLOBAL"),
		Where: str("notify_data.body.services[0].properties.temp > 30")}})
	if err != nil {
		t.Fatal(err)
	}
	if rule.RuleId == nil || *rule.Active || *rule.Where != "notify_data.body.services[0].properties.temp > 30" || *rule.AppId != g.Project {
		t.Fatalf("created %v", rule)
	}
	on := true
	upd, err := c.UpdateRoutingRule(&model.UpdateRoutingRuleRequest{RuleId: *rule.RuleId, Body: &model.UpdateRuleReq{Active: &on}})
	if err != nil || !*upd.Active {
		t.Fatalf("update: %v %v", upd, err)
	}
	list, err := c.ListRoutingRules(&model.ListRoutingRulesRequest{Resource: str("device.property")})
	if err != nil || *list.Count != 1 || (*list.Rules)[0].Subject.Event != "report" {
		t.Fatalf("list: %v %v", list, err)
	}

	port := int32(9092)
	for _, d := range []struct {
		channel string
		detail  *model.ChannelDetail
	}{
		{"HTTP_FORWARDING", &model.ChannelDetail{HttpForwarding: &model.HttpForwarding{Url: "http://127.0.0.1:9/push",
			SignatureEnable: &on, Token: str("sdkToken1")}}},
		{"DMS_KAFKA_FORWARDING", &model.ChannelDetail{DmsKafkaForwarding: &model.DmsKafkaForwarding{RegionName: "local-1",
			ProjectId: g.Project, Addresses: []model.NetAddress{{Ip: str("127.0.0.1"), Port: &port}}, Topic: "iot"}}},
	} {
		a, err := c.CreateRuleAction(&model.CreateRuleActionRequest{Body: &model.AddActionReq{RuleId: *rule.RuleId,
			Channel: d.channel, ChannelDetail: d.detail}})
		if err != nil {
			t.Fatalf("%s: %v", d.channel, err)
		}
		shown, err := c.ShowRuleAction(&model.ShowRuleActionRequest{ActionId: *a.ActionId})
		if err != nil || *shown.Channel != d.channel || *shown.RuleId != *rule.RuleId {
			t.Fatalf("show %s: %v %v", d.channel, shown, err)
		}
		if h := shown.ChannelDetail.HttpForwarding; h != nil && (h.Url != "http://127.0.0.1:9/push" || h.Token != nil) {
			t.Errorf("shown HTTP detail %v (the token is never returned)", h)
		}
		if k := shown.ChannelDetail.DmsKafkaForwarding; k != nil && (k.Topic != "iot" || *k.Addresses[0].Port != 9092) {
			t.Errorf("shown Kafka detail %v", k)
		}
	}
	actions, err := c.ListRuleActions(&model.ListRuleActionsRequest{RuleId: rule.RuleId})
	if err != nil || *actions.Count != 2 {
		t.Fatalf("list actions: %v %v", actions, err)
	}

	// A flow-control policy for the rule's HTTP actions.
	lim := int32(300)
	pol, err := c.CreateRoutingFlowControlPolicy(&model.CreateRoutingFlowControlPolicyRequest{Body: &model.AddFlowControlPolicy{
		PolicyName: str("http"), Scope: str("CHANNEL"), ScopeValue: str("HTTP_FORWARDING"), Limit: &lim}})
	if err != nil || pol.PolicyId == nil || *pol.Limit != 300 {
		t.Fatalf("flow-control policy: %v %v", pol, err)
	}
	lim = 100
	if up, err := c.UpdateRoutingFlowControlPolicy(&model.UpdateRoutingFlowControlPolicyRequest{PolicyId: *pol.PolicyId,
		Body: &model.UpdateFlowControlPolicy{Limit: &lim}}); err != nil || *up.Limit != 100 {
		t.Fatalf("update policy: %v %v", up, err)
	}
	if ps, err := c.ListRoutingFlowControlPolicy(&model.ListRoutingFlowControlPolicyRequest{Scope: str("CHANNEL")}); err != nil ||
		len(*ps.FlowcontrolPolicies) != 1 || *(*ps.FlowcontrolPolicies)[0].ScopeValue != "HTTP_FORWARDING" {
		t.Fatalf("list policies: %v %v", ps, err)
	}

	// A backlog policy for the project's actions.
	size, secs := int32(4096), int32(600)
	bp, err := c.CreateRoutingBacklogPolicy(&model.CreateRoutingBacklogPolicyRequest{Body: &model.AddBacklogPolicy{
		PolicyName: str("small"), BacklogSize: &size, BacklogTime: &secs}})
	if err != nil || bp.PolicyId == nil || *bp.BacklogSize != 4096 || *bp.BacklogTime != 600 {
		t.Fatalf("backlog policy: %v %v", bp, err)
	}
	secs = 0
	if up, err := c.UpdateRoutingBacklogPolicy(&model.UpdateRoutingBacklogPolicyRequest{PolicyId: *bp.PolicyId,
		Body: &model.UpdateBacklogPolicy{BacklogTime: &secs}}); err != nil || *up.BacklogTime != 0 || *up.BacklogSize != 4096 {
		t.Fatalf("update backlog policy: %v %v", up, err)
	}
	if ps, err := c.ListRoutingBacklogPolicy(&model.ListRoutingBacklogPolicyRequest{}); err != nil ||
		len(*ps.BacklogPolicies) != 1 || *(*ps.BacklogPolicies)[0].PolicyName != "small" || *ps.Count != 1 {
		t.Fatalf("list backlog policies: %v %v", ps, err)
	}
	if _, err := c.DeleteRoutingBacklogPolicy(&model.DeleteRoutingBacklogPolicyRequest{PolicyId: *bp.PolicyId}); err != nil {
		t.Fatal(err)
	}

	// A rule's select, as IoTDA's.
	sel, err := c.CreateRoutingRule(&model.CreateRoutingRuleRequest{Body: &model.AddRuleReq{
		Subject: &model.RoutingRuleSubject{Resource: "device.message", Event: "report"},
		Select:  str("notify_data.header.device_id AS device_id, notify_data.body.content")}})
	if err != nil || *sel.Select != "notify_data.header.device_id AS device_id, notify_data.body.content" {
		t.Fatalf("rule with a select: %v %v", sel, err)
	}

	// A bad where is IoTDA's 400, naming the problem.
	_, err = c.CreateRoutingRule(&model.CreateRoutingRuleRequest{Body: &model.AddRuleReq{
		Subject: &model.RoutingRuleSubject{Resource: "device.message", Event: "report"}, Where: str("notify_data.body.x LIKE 'a%'")}})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || se.ErrorCode != "IOTDA.000006" {
		t.Fatalf("bad where: %v", err)
	}
	if _, err := c.DeleteRoutingRule(&model.DeleteRoutingRuleRequest{RuleId: *rule.RuleId}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ShowRuleAction(&model.ShowRuleActionRequest{ActionId: *(*actions.Actions)[0].ActionId})
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.ErrorCode != "IOTDA.014701" {
		t.Fatalf("action of a deleted rule: %v", err)
	}
}
