package registry

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

func TestRoutingRuleValidation(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	ok := RoutingRule{Name: "temps", Subject: RuleSubject{ResourceDeviceProperty, EventReport}}
	for _, tc := range []struct {
		name  string
		app   string
		edit  func(*RoutingRule)
		field string // "" = accepted
	}{
		{"minimal", "", func(*RoutingRule) {}, ""},
		{"app in own project", "proj", func(r *RoutingRule) { r.AppType = AppTypeApp }, ""},
		{"where", "", func(r *RoutingRule) { r.Where = "notify_data.body.services[0].properties.temp > 30" }, ""},
		{"select star", "", func(r *RoutingRule) { r.Select = "*" }, ""},
		{"app of another project", "other", func(*RoutingRule) {}, "app_id"},
		{"no resource", "", func(r *RoutingRule) { r.Subject.Resource = "" }, "subject.resource"},
		{"no event", "", func(r *RoutingRule) { r.Subject.Event = "" }, "subject.event"},
		{"unknown subject", "", func(r *RoutingRule) { r.Subject = RuleSubject{"batchtask", EventUpdate} }, "subject"},
		{"mismatched pair", "", func(r *RoutingRule) { r.Subject = RuleSubject{ResourceDeviceMessage, EventUpdate} }, "subject"},
		{"bad app type", "", func(r *RoutingRule) { r.AppType = "TENANT" }, "app_type"},
		{"select fields", "", func(r *RoutingRule) { r.Select = "notify_data.body, 'v1' AS schema" }, ""},
		{"bad select", "", func(r *RoutingRule) { r.Select = "body" }, "select"},
		{"bad where", "", func(r *RoutingRule) { r.Where = "temp > 3" }, "where"},
		{"bad name", "", func(r *RoutingRule) { r.Name = "a<b" }, "rule_name"},
		{"long description", "", func(r *RoutingRule) { r.Description = strings.Repeat("d", 257) }, "description"},
	} {
		rule := ok
		tc.edit(&rule)
		_, err := r.AddRoutingRule(ctx, "proj", tc.app, rule)
		var ve *ValidationError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &ve) || ve.Field != tc.field):
			t.Errorf("%s: err %v, want invalid %s", tc.name, err, tc.field)
		}
	}
	// The where error names the position and the problem.
	rule := ok
	rule.Where = "notify_data.body.x == 1"
	_, err := r.AddRoutingRule(ctx, "proj", "", rule)
	if err == nil || !strings.Contains(err.Error(), "at character 20: '==' is not an operator") {
		t.Errorf("where error: %v", err)
	}
}

func TestRoutingRuleLifecycle(t *testing.T) {
	r, store := newTestRegistry(t, nil)
	ctx := context.Background()
	rule, err := r.AddRoutingRule(ctx, "proj", "", RoutingRule{Name: "up", Subject: RuleSubject{ResourceDeviceMessage, EventReport}, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	if rule.AppType != AppTypeGlobal || rule.ID == "" {
		t.Fatalf("rule %+v", rule)
	}
	// Another project sees nothing of it.
	if _, err := r.RoutingRule(ctx, "other", rule.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("other project read the rule: %v", err)
	}
	if _, err := r.AddRuleAction(ctx, "other", RuleAction{RuleID: rule.ID, Channel: ChannelHTTP,
		Detail: ChannelDetail{HTTP: &HTTPForwarding{URL: "http://127.0.0.1:1/"}}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("other project added an action to the rule: %v", err)
	}
	where := "notify_data.header.device_id = 'd1'"
	inactive := false
	got, err := r.UpdateRoutingRule(ctx, "proj", rule.ID, RuleChange{Where: &where, Active: &inactive})
	if err != nil || got.Where != where || got.Active || got.Subject != rule.Subject {
		t.Fatalf("update: %+v %v", got, err)
	}
	bad := "x"
	if _, err := r.UpdateRoutingRule(ctx, "proj", rule.ID, RuleChange{Where: &bad}); err == nil {
		t.Error("update took a bad where")
	}

	// An action starts at the stream's end: an event recorded before it
	// is not after its cursor.
	mustProduct(t, r, "proj", "p", "MQTT")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n1", ProductID: "p"}); err != nil {
		t.Fatal(err)
	}
	a, err := r.AddRuleAction(ctx, "proj", RuleAction{RuleID: rule.ID, Channel: ChannelHTTP,
		Detail: ChannelDetail{HTTP: &HTTPForwarding{URL: "http://127.0.0.1:1/", SignatureEnable: true, Token: "sekret123"}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.EventConsumer(ctx, "proj", ActionConsumer(a.ID))
	if err != nil {
		t.Fatal(err)
	}
	page, err := r.Events(ctx, "proj", c.Cursor, 10)
	if err != nil || len(page.Events) != 0 {
		t.Errorf("events after a new action's cursor: %v %v", page, err)
	}
	// The token is sealed at rest and opened on read.
	_ = store.View(ctx, func(rd kv.Reader) error {
		v, err := rd.Get(ruleActionKey("proj", a.ID))
		if err != nil || bytes.Contains(v, []byte("sekret123")) {
			t.Errorf("stored action %q %v", v, err)
		}
		return nil
	})
	all, err := r.AllRuleActions(ctx)
	if err != nil || len(all) != 1 || all[0].Detail.HTTP.Token != "sekret123" {
		t.Fatalf("all actions: %+v %v", all, err)
	}
	// The action's consumer is not deleted on its own.
	var ve *ValidationError
	if err := r.DeleteEventConsumer(ctx, "proj", ActionConsumer(a.ID)); !errors.As(err, &ve) {
		t.Errorf("deleted an action's consumer: %v", err)
	}
	// Deleting the rule deletes its action and the action's consumer.
	if err := r.DeleteRoutingRule(ctx, "proj", rule.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RuleAction(ctx, "proj", a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("action outlived its rule: %v", err)
	}
	if _, err := r.EventConsumer(ctx, "proj", ActionConsumer(a.ID)); !errors.Is(err, ErrNotFound) {
		t.Errorf("consumer outlived its action: %v", err)
	}
}

func TestRuleActionValidation(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	rule, err := r.AddRoutingRule(ctx, "proj", "", RoutingRule{Subject: RuleSubject{ResourceDeviceStatus, EventUpdate}})
	if err != nil {
		t.Fatal(err)
	}
	h := func(f HTTPForwarding) ChannelDetail { return ChannelDetail{HTTP: &f} }
	k := func(f KafkaForwarding) ChannelDetail { return ChannelDetail{Kafka: &f} }
	n := func(f NATSForwarding) ChannelDetail { return ChannelDetail{NATS: &f} }
	broker := []NetAddress{{IP: "127.0.0.1", Port: 9092}}
	for _, tc := range []struct {
		name    string
		channel string
		detail  ChannelDetail
		field   string
	}{
		{"http", ChannelHTTP, h(HTTPForwarding{URL: "https://app.example:8443/push"}), ""},
		{"http token", ChannelHTTP, h(HTTPForwarding{URL: "http://a/", SignatureEnable: true, Token: "abc123"}), ""},
		{"kafka", ChannelKafka, k(KafkaForwarding{Addresses: broker, Topic: "iot.up"}), ""},
		{"kafka sasl", ChannelKafka, k(KafkaForwarding{Addresses: broker, Topic: "t", Mechanism: "PLAIN", Username: "u", Password: "p"}), ""},
		{"nats", ChannelNATS, n(NATSForwarding{URL: "nats://127.0.0.1:4222", Subject: "iot.up", JetStream: true}), ""},
		{"no channel", "", h(HTTPForwarding{URL: "http://a/"}), "channel"},
		{"amqp", "AMQP_FORWARDING", ChannelDetail{}, "channel"},
		{"two details", ChannelHTTP, ChannelDetail{HTTP: &HTTPForwarding{URL: "http://a/"}, NATS: &NATSForwarding{}}, "channel_detail"},
		{"detail missing", ChannelHTTP, n(NATSForwarding{URL: "nats://a:1", Subject: "s"}), "channel_detail.http_forwarding"},
		{"http no url", ChannelHTTP, h(HTTPForwarding{}), "channel_detail.http_forwarding.url"},
		{"http relative", ChannelHTTP, h(HTTPForwarding{URL: "/push"}), "channel_detail.http_forwarding.url"},
		{"http ftp", ChannelHTTP, h(HTTPForwarding{URL: "ftp://a/"}), "channel_detail.http_forwarding.url"},
		{"http userinfo", ChannelHTTP, h(HTTPForwarding{URL: "http://u:p@a/"}), "channel_detail.http_forwarding.url"},
		{"cert on http", ChannelHTTP, h(HTTPForwarding{URL: "http://a/", CertID: "x"}), "channel_detail.http_forwarding.cert_id"},
		{"unknown cert", ChannelHTTP, h(HTTPForwarding{URL: "https://a/", CertID: "nope"}), "channel_detail.http_forwarding.cert_id"},
		{"sni no name", ChannelHTTP, h(HTTPForwarding{URL: "https://a/", SNIEnable: true}), "channel_detail.http_forwarding.cn_name"},
		{"token unsigned", ChannelHTTP, h(HTTPForwarding{URL: "http://a/", Token: "abc"}), "channel_detail.http_forwarding.signature_enable"},
		{"token short", ChannelHTTP, h(HTTPForwarding{URL: "http://a/", SignatureEnable: true, Token: "ab"}), "channel_detail.http_forwarding.token"},
		{"token chars", ChannelHTTP, h(HTTPForwarding{URL: "http://a/", SignatureEnable: true, Token: "ab-cd"}), "channel_detail.http_forwarding.token"},
		{"kafka no broker", ChannelKafka, k(KafkaForwarding{Topic: "t"}), "channel_detail.dms_kafka_forwarding.addresses"},
		{"kafka no host", ChannelKafka, k(KafkaForwarding{Addresses: []NetAddress{{Port: 1}}, Topic: "t"}), "channel_detail.dms_kafka_forwarding.addresses[0]"},
		{"kafka port", ChannelKafka, k(KafkaForwarding{Addresses: []NetAddress{{IP: "h", Port: 70000}}, Topic: "t"}), "channel_detail.dms_kafka_forwarding.addresses[0].port"},
		{"kafka topic", ChannelKafka, k(KafkaForwarding{Addresses: broker, Topic: "a/b"}), "channel_detail.dms_kafka_forwarding.topic"},
		{"kafka mechanism", ChannelKafka, k(KafkaForwarding{Addresses: broker, Topic: "t", Mechanism: "GSSAPI"}), "channel_detail.dms_kafka_forwarding.mechanism"},
		{"kafka no password", ChannelKafka, k(KafkaForwarding{Addresses: broker, Topic: "t", Mechanism: "PLAIN", Username: "u"}), "channel_detail.dms_kafka_forwarding.username"},
		{"kafka protocol", ChannelKafka, k(KafkaForwarding{Addresses: broker, Topic: "t", SecurityProtocol: "SSL"}), "channel_detail.dms_kafka_forwarding.security_protocol"},
		{"nats scheme", ChannelNATS, n(NATSForwarding{URL: "http://a:1", Subject: "s"}), "channel_detail.nats_forwarding.url"},
		{"nats wildcard", ChannelNATS, n(NATSForwarding{URL: "nats://a:1", Subject: "iot.>"}), "channel_detail.nats_forwarding.subject"},
		{"nats empty token", ChannelNATS, n(NATSForwarding{URL: "nats://a:1", Subject: "iot..up"}), "channel_detail.nats_forwarding.subject"},
	} {
		_, err := r.AddRuleAction(ctx, "proj", RuleAction{RuleID: rule.ID, Channel: tc.channel, Detail: tc.detail})
		var ve *ValidationError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &ve) || ve.Field != tc.field):
			t.Errorf("%s: err %v, want invalid %s", tc.name, err, tc.field)
		}
	}
	if _, err := r.AddRuleAction(ctx, "proj", RuleAction{RuleID: "missing", Channel: ChannelHTTP,
		Detail: h(HTTPForwarding{URL: "http://a/"})}); !errors.Is(err, ErrNotFound) {
		t.Errorf("action of a missing rule: %v", err)
	}
	// A rule holds at most MaxActionsPerRule actions (5 were accepted above).
	for i := 5; i < MaxActionsPerRule; i++ {
		if _, err := r.AddRuleAction(ctx, "proj", RuleAction{RuleID: rule.ID, Channel: ChannelHTTP, Detail: h(HTTPForwarding{URL: "http://a/"})}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.AddRuleAction(ctx, "proj", RuleAction{RuleID: rule.ID, Channel: ChannelHTTP, Detail: h(HTTPForwarding{URL: "http://a/"})}); !errors.Is(err, ErrQuota) {
		t.Errorf("action over quota: %v", err)
	}
}
