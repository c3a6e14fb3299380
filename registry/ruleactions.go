package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Rule actions: where a rule's events go. Each action has its own event
// consumer (ActionConsumer), created with the action at the stream's
// current end, so an action forwards what happens after it is created,
// and deleted with it. The delivery engine reads the stream through that
// consumer and acknowledges what the destination acknowledged.

// Channels (IoTDA's names; NATS_FORWARDING is iotgate's).
const (
	ChannelHTTP  = "HTTP_FORWARDING"
	ChannelKafka = "DMS_KAFKA_FORWARDING"
	ChannelNATS  = "NATS_FORWARDING"
)

// RuleAction is a destination of a rule's events.
type RuleAction struct {
	ID        string        `json:"id"`
	ProjectID string        `json:"project"`
	RuleID    string        `json:"rule_id"`
	Channel   string        `json:"channel"`
	Detail    ChannelDetail `json:"channel_detail"`
	Created   time.Time     `json:"created"`
	// Updated changes with every update: a delivery worker restarts when
	// its action's Updated is not the one it started with.
	Updated time.Time `json:"updated"`
}

// ChannelDetail is IoTDA's channel_detail: the one field of the action's
// channel is set.
type ChannelDetail struct {
	HTTP  *HTTPForwarding  `json:"http_forwarding,omitempty"`
	Kafka *KafkaForwarding `json:"dms_kafka_forwarding,omitempty"`
	NATS  *NATSForwarding  `json:"nats_forwarding,omitempty"`
}

// HTTPForwarding pushes each event as an HTTP POST.
type HTTPForwarding struct {
	URL string `json:"url"`
	// CertID names a CA certificate of the project (certificate API)
	// that the HTTPS server's certificate must chain to; empty: the
	// system roots.
	CertID string `json:"cert_id,omitempty"`
	// CNName is the server name sent (SNI) and verified when SNIEnable.
	CNName    string `json:"cn_name,omitempty"`
	SNIEnable bool   `json:"sni_enable"`
	// SignatureEnable signs each push with Token (a secret).
	SignatureEnable bool   `json:"signature_enable"`
	Token           string `json:"token,omitempty"`
}

// KafkaForwarding produces each event to a Kafka topic.
type KafkaForwarding struct {
	RegionName       string       `json:"region_name,omitempty"`
	ProjectID        string       `json:"project_id,omitempty"`
	Addresses        []NetAddress `json:"addresses"`
	Topic            string       `json:"topic"`
	Username         string       `json:"username,omitempty"`
	Password         string       `json:"password,omitempty"` // a secret
	Mechanism        string       `json:"mechanism,omitempty"`
	SecurityProtocol string       `json:"security_protocol,omitempty"`
}

// NetAddress is a broker address.
type NetAddress struct {
	IP     string `json:"ip,omitempty"`
	Port   int    `json:"port"`
	Domain string `json:"domain,omitempty"`
}

// NATSForwarding publishes each event on a NATS subject.
type NATSForwarding struct {
	URL     string `json:"url"`
	Subject string `json:"subject"`
	// JetStream: a message is delivered when the stream acknowledges it.
	JetStream bool `json:"jetstream"`
}

// actionConsumerPrefix starts the names of actions' event consumers.
const actionConsumerPrefix = "fwd-"

// ActionConsumer is the name of an action's event consumer.
func ActionConsumer(actionID string) string { return actionConsumerPrefix + actionID }

// ActionChange is an update of an action; nil fields keep their value.
type ActionChange struct {
	Channel *string
	Detail  *ChannelDetail
}

func (r *Registry) validateAction(rd Reader, a *RuleAction) error {
	d := a.Detail
	set := 0
	for _, p := range []bool{d.HTTP != nil, d.Kafka != nil, d.NATS != nil} {
		if p {
			set++
		}
	}
	if set > 1 {
		return invalid("channel_detail", "must hold only the detail of channel %s", a.Channel)
	}
	switch a.Channel {
	case ChannelHTTP:
		if d.HTTP == nil {
			return invalid("channel_detail.http_forwarding", "is required for channel %s", a.Channel)
		}
		return validateHTTP(rd, a.ProjectID, d.HTTP)
	case ChannelKafka:
		if d.Kafka == nil {
			return invalid("channel_detail.dms_kafka_forwarding", "is required for channel %s", a.Channel)
		}
		return validateKafka(d.Kafka)
	case ChannelNATS:
		if d.NATS == nil {
			return invalid("channel_detail.nats_forwarding", "is required for channel %s", a.Channel)
		}
		return validateNATS(d.NATS)
	case "":
		return invalid("channel", "is required")
	}
	return invalid("channel", "%q is not supported; supported: %s, %s, %s", a.Channel, ChannelHTTP, ChannelKafka, ChannelNATS)
}

func validateHTTP(rd Reader, project string, h *HTTPForwarding) error {
	const f = "channel_detail.http_forwarding."
	if h.URL == "" {
		return invalid(f+"url", "is required")
	}
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(f+"url", "must be an absolute http:// or https:// URL")
	}
	if u.User != nil {
		return invalid(f+"url", "must not carry credentials (use token)")
	}
	if h.CertID != "" {
		if u.Scheme != "https" {
			return invalid(f+"cert_id", "applies to https:// URLs only")
		}
		if _, err := getCert(rd, project, h.CertID); err != nil {
			var nf *NotFoundError
			if errors.As(err, &nf) {
				return invalid(f+"cert_id", "no CA certificate %q in this project", h.CertID)
			}
			return err
		}
	}
	if h.SNIEnable && h.CNName == "" {
		return invalid(f+"cn_name", "is required when sni_enable is true")
	}
	if len(h.CNName) > 256 {
		return invalid(f+"cn_name", "must be at most 256 characters")
	}
	if h.SignatureEnable || h.Token != "" {
		if !h.SignatureEnable {
			return invalid(f+"signature_enable", "must be true when a token is given")
		}
		if len(h.Token) < 3 || len(h.Token) > 32 || strings.IndexFunc(h.Token, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		}) >= 0 {
			return invalid(f+"token", "must be 3 to 32 letters and digits")
		}
	}
	return nil
}

func validateKafka(k *KafkaForwarding) error {
	const f = "channel_detail.dms_kafka_forwarding."
	if len(k.Addresses) == 0 {
		return invalid(f+"addresses", "is required (at least one broker)")
	}
	if len(k.Addresses) > 10 {
		return invalid(f+"addresses", "must hold at most 10 brokers")
	}
	for i, a := range k.Addresses {
		if a.IP == "" && a.Domain == "" {
			return invalid(fmt.Sprintf("%saddresses[%d]", f, i), "needs ip or domain")
		}
		if a.Port < 1 || a.Port > 65535 {
			return invalid(fmt.Sprintf("%saddresses[%d].port", f, i), "must be 1 to 65535")
		}
	}
	if k.Topic == "" || len(k.Topic) > 249 || strings.IndexFunc(k.Topic, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-')
	}) >= 0 {
		return invalid(f+"topic", "must be 1 to 249 letters, digits, '.', '_' and '-'")
	}
	switch k.Mechanism {
	case "", "PAAS":
		if k.Username != "" || k.Password != "" {
			return invalid(f+"mechanism", "must be PLAIN or SCRAM-SHA-512 when username and password are given")
		}
	case "PLAIN", "SCRAM-SHA-512":
		if k.Username == "" || k.Password == "" {
			return invalid(f+"username", "and password are required with mechanism %s", k.Mechanism)
		}
	default:
		return invalid(f+"mechanism", "must be PAAS, PLAIN or SCRAM-SHA-512")
	}
	switch k.SecurityProtocol {
	case "", "SASL_SSL", "SASL_PLAINTEXT":
	default:
		return invalid(f+"security_protocol", "must be SASL_SSL or SASL_PLAINTEXT")
	}
	return nil
}

func validateNATS(n *NATSForwarding) error {
	const f = "channel_detail.nats_forwarding."
	u, err := url.Parse(n.URL)
	if n.URL == "" || err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
		return invalid(f+"url", "must be a nats:// or tls:// URL")
	}
	if n.Subject == "" || len(n.Subject) > 256 || strings.ContainsAny(n.Subject, " \t\r\n*>") ||
		strings.HasPrefix(n.Subject, ".") || strings.HasSuffix(n.Subject, ".") || strings.Contains(n.Subject, "..") {
		return invalid(f+"subject", "must be a NATS subject without wildcards (tokens separated by '.')")
	}
	return nil
}

// AddRuleAction creates an action of one of project's rules, with its
// event consumer at the stream's end.
func (r *Registry) AddRuleAction(ctx context.Context, project string, a RuleAction) (*RuleAction, error) {
	if err := checkID("rule_id", a.RuleID, 36, true); err != nil {
		return nil, err
	}
	now := r.now().UTC()
	a.ID, a.ProjectID, a.Created, a.Updated = r.ids.Next(now), project, now, now
	err := r.write(ctx, func(w Writer) error {
		if _, err := getRule(w, project, a.RuleID); err != nil {
			return err
		}
		if err := r.validateAction(w, &a); err != nil {
			return err
		}
		actions, err := scanActions(w, prefixKey(famRuleAction, project))
		if err != nil {
			return err
		}
		n := 0
		for _, o := range actions {
			if o.RuleID == a.RuleID {
				n++
			}
		}
		if n >= MaxActionsPerRule {
			return fmt.Errorf("%w: a rule has at most %d actions", ErrQuota, MaxActionsPerRule)
		}
		if err := r.putAction(w, &a); err != nil {
			return err
		}
		end, err := r.streamEnd(w)
		if err != nil {
			return err
		}
		return putEventConsumer(w, &EventConsumer{ProjectID: project, Name: ActionConsumer(a.ID), Cursor: end, Created: now})
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// streamEnd is the last position handed out, as w's write sees it: on one
// node writes run in commit order on the committer, so the counter is
// exact; on a cluster it is the store's.
func (r *Registry) streamEnd(w Reader) (uint64, error) {
	if !r.events.shared {
		return r.events.last.Load(), nil
	}
	return readEventPosition(w)
}

// RuleAction returns an action of project, with its secrets.
func (r *Registry) RuleAction(ctx context.Context, project, id string) (*RuleAction, error) {
	var a *RuleAction
	err := r.view(ctx, func(rd Reader) error {
		var err error
		a, err = r.getAction(rd, project, id)
		return err
	})
	return a, err
}

// RuleActions lists the project's actions, oldest first.
func (r *Registry) RuleActions(ctx context.Context, project string) ([]*RuleAction, error) {
	return r.listActions(ctx, prefixKey(famRuleAction, project))
}

// AllRuleActions lists every project's actions (for the delivery engine).
func (r *Registry) AllRuleActions(ctx context.Context) ([]*RuleAction, error) {
	return r.listActions(ctx, prefixKey(famRuleAction))
}

func (r *Registry) listActions(ctx context.Context, prefix []byte) ([]*RuleAction, error) {
	var out []*RuleAction
	err := r.view(ctx, func(rd Reader) error {
		stored, err := scanActions(rd, prefix)
		if err != nil {
			return err
		}
		out = make([]*RuleAction, 0, len(stored))
		for _, s := range stored {
			a, err := r.openAction(s)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// UpdateRuleAction changes an action's channel or detail; its cursor is
// kept, so nothing selected meanwhile is skipped.
func (r *Registry) UpdateRuleAction(ctx context.Context, project, id string, ch ActionChange) (*RuleAction, error) {
	var out *RuleAction
	err := r.write(ctx, func(w Writer) error {
		a, err := r.getAction(w, project, id)
		if err != nil {
			return err
		}
		if ch.Channel != nil {
			a.Channel = *ch.Channel
		}
		if ch.Detail != nil {
			a.Detail = *ch.Detail
		}
		if err := r.validateAction(w, a); err != nil {
			return err
		}
		a.Updated = r.now().UTC()
		out = a
		return r.putAction(w, a)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteRuleAction deletes an action and its event consumer.
func (r *Registry) DeleteRuleAction(ctx context.Context, project, id string) error {
	return r.write(ctx, func(w Writer) error {
		v, err := w.Get(ruleActionKey(project, id))
		if errors.Is(err, kv.ErrNotFound) {
			return &NotFoundError{Kind: EntityRuleAction, ID: id}
		}
		if err != nil {
			return fmt.Errorf("read rule action %s: %w", id, err)
		}
		s, err := decodeStoredAction(v)
		if err != nil {
			return err
		}
		return deleteAction(w, s)
	})
}

func deleteAction(w Writer, s *storedAction) error {
	if err := w.Delete(eventConsumerKey(s.ProjectID, ActionConsumer(s.ID))); err != nil {
		return err
	}
	if err := deleteScopedPolicies(w, s.ProjectID, FlowScopeAction, s.ID); err != nil {
		return err
	}
	return w.Delete(ruleActionKey(s.ProjectID, s.ID))
}

// deleteScopedPolicies deletes the flow-control policies of a rule or an
// action being deleted.
func deleteScopedPolicies(w Writer, project, scope, id string) error {
	ps, err := scanFlowPolicies(w, project)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Scope == scope && p.ScopeValue == id {
			if err := w.Delete(flowPolicyKey(project, p.ID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// storedAction is a RuleAction with its secrets (HTTP token, Kafka
// password) sealed under the master key.
type storedAction struct {
	RuleAction
	Sealed []byte `json:"sealed,omitempty"`
}

func secretOf(a *RuleAction) *string {
	switch {
	case a.Detail.HTTP != nil:
		return &a.Detail.HTTP.Token
	case a.Detail.Kafka != nil:
		return &a.Detail.Kafka.Password
	}
	return nil
}

func (r *Registry) putAction(w Writer, a *RuleAction) error {
	s := storedAction{RuleAction: *a}
	s.Detail = cloneDetail(a.Detail)
	if p := secretOf(&s.RuleAction); p != nil {
		s.Sealed = r.seal.seal(*p, "action/"+a.ID)
		*p = ""
	}
	b, err := json.Marshal(&s)
	if err != nil {
		return fmt.Errorf("encode rule action %s: %w", a.ID, err)
	}
	return w.Set(ruleActionKey(a.ProjectID, a.ID), b)
}

func cloneDetail(d ChannelDetail) ChannelDetail {
	if d.HTTP != nil {
		h := *d.HTTP
		d.HTTP = &h
	}
	if d.Kafka != nil {
		k := *d.Kafka
		k.Addresses = append([]NetAddress(nil), k.Addresses...)
		d.Kafka = &k
	}
	if d.NATS != nil {
		n := *d.NATS
		d.NATS = &n
	}
	return d
}

func decodeStoredAction(v []byte) (*storedAction, error) {
	s := &storedAction{}
	if err := json.Unmarshal(v, s); err != nil {
		return nil, fmt.Errorf("decode rule action: %w", err)
	}
	return s, nil
}

func (r *Registry) openAction(s *storedAction) (*RuleAction, error) {
	a := s.RuleAction
	if p := secretOf(&a); p != nil {
		secret, err := r.seal.open(s.Sealed, "action/"+a.ID)
		if err != nil {
			return nil, fmt.Errorf("rule action %s: %w", a.ID, err)
		}
		*p = secret
	}
	return &a, nil
}

func (r *Registry) getAction(rd Reader, project, id string) (*RuleAction, error) {
	v, err := rd.Get(ruleActionKey(project, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityRuleAction, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read rule action %s: %w", id, err)
	}
	s, err := decodeStoredAction(v)
	if err != nil {
		return nil, err
	}
	return r.openAction(s)
}

func scanActions(rd Reader, prefix []byte) ([]*storedAction, error) {
	var out []*storedAction
	err := rd.Scan(prefix, nil, false, func(_, v []byte) (bool, error) {
		s, err := decodeStoredAction(v)
		if err != nil {
			return false, err
		}
		out = append(out, s)
		return true, nil
	})
	return out, err
}

// EventHorizon is the highest position trimmed from project's events: a
// consumer whose cursor is below it lost the events in between (see
// ErrEventsTrimmed).
func (r *Registry) EventHorizon(ctx context.Context, project string) (uint64, error) {
	var h uint64
	err := r.view(ctx, func(rd Reader) error {
		var err error
		h, err = readEventHorizon(rd, project)
		return err
	})
	return h, err
}
