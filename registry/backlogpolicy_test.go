package registry

import (
	"context"
	"errors"
	"testing"
)

func TestBacklogPolicies(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	i64 := func(v int64) *int64 { return &v }
	p, err := r.AddBacklogPolicy(ctx, "proj", NewBacklogPolicy{Name: "default"})
	if err != nil || p.Size != MaxBacklogSize || p.Time != MaxBacklogTime {
		t.Fatalf("defaults: %+v %v, want IoTDA's 1073741823 bytes and 86399 s", p, err)
	}
	for _, tc := range []struct {
		name  string
		n     NewBacklogPolicy
		field string
	}{
		{"negative size", NewBacklogPolicy{Size: i64(-1)}, "backlog_size"},
		{"size over 1 GiB", NewBacklogPolicy{Size: i64(MaxBacklogSize + 1)}, "backlog_size"},
		{"a day", NewBacklogPolicy{Time: i64(86400)}, "backlog_time"},
		{"bad name", NewBacklogPolicy{Name: "a<b"}, "policy_name"},
	} {
		_, err := r.AddBacklogPolicy(ctx, "proj", tc.n)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: %v, want invalid %s", tc.name, err, tc.field)
		}
	}
	q, err := r.AddBacklogPolicy(ctx, "proj", NewBacklogPolicy{Name: "tight", Size: i64(4096), Time: i64(0)})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := r.BacklogPolicies(ctx, "proj")
	if size, age, ok := BacklogBound(ps); err != nil || !ok || size != 4096 || age != 0 {
		t.Errorf("bound of %d policies: %d bytes, %v (%v)", len(ps), size, age, err)
	}
	if ps, _ := r.BacklogPolicies(ctx, "other"); len(ps) != 0 {
		t.Errorf("another project sees %d policies", len(ps))
	}
	if _, _, ok := BacklogBound(nil); ok {
		t.Error("no policy bounds nothing")
	}
	up, err := r.UpdateBacklogPolicy(ctx, "proj", q.ID, BacklogPolicyChange{Time: i64(60)})
	if err != nil || up.Time != 60 || up.Size != 4096 || up.Name != "tight" {
		t.Errorf("update: %+v %v", up, err)
	}
	if _, err := r.UpdateBacklogPolicy(ctx, "proj", q.ID, BacklogPolicyChange{Size: i64(-5)}); err == nil {
		t.Error("an invalid update was taken")
	}
	if got, _ := r.BacklogPolicy(ctx, "proj", q.ID); got.Size != 4096 {
		t.Errorf("a refused update changed the policy: %+v", got)
	}
	if err := r.DeleteBacklogPolicy(ctx, "proj", q.ID); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := r.BacklogPolicy(ctx, "proj", q.ID); !errors.As(err, &nf) || nf.Kind != EntityBacklogPolicy {
		t.Errorf("deleted policy: %v", err)
	}
	for range MaxBacklogPoliciesPerProject - 1 {
		if _, err := r.AddBacklogPolicy(ctx, "proj", NewBacklogPolicy{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.AddBacklogPolicy(ctx, "proj", NewBacklogPolicy{}); !errors.Is(err, ErrQuota) {
		t.Errorf("policy %d: %v, want the quota", MaxBacklogPoliciesPerProject+1, err)
	}
}
