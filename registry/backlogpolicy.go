package registry

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// Backlog policies (IoTDA's routing-rule backlog-policy): how much of
// what a project's actions could not deliver they keep, by size and by
// age; past either, the oldest is dropped (counted and logged by the
// delivery engine). A project's actions take the lowest size and the
// lowest age of its policies, and at most the node's configured bounds
// (forwarding.backlog). IoTDA's policies have no scope: each bounds the
// whole project.

// Backlog policy limits (IoTDA's: up to 1 GiB - 1 and 1 day - 1 s, those
// by default; 0 keeps no backlog) and the policies a project may hold.
const (
	MaxBacklogSize                = 1073741823 // bytes
	MaxBacklogTime                = 86399      // seconds
	MaxBacklogPoliciesPerProject  = 10
	maxBacklogPolicyName          = 256
	maxBacklogPolicyDescription   = 256
	backlogPolicyDefaultSize      = MaxBacklogSize
	backlogPolicyDefaultTimeLimit = MaxBacklogTime
)

// BacklogPolicy bounds the backlog of a project's actions.
type BacklogPolicy struct {
	ID          string `json:"id"`
	ProjectID   string `json:"project"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Size is in bytes of stored events, Time in seconds; 0: no backlog
	// (what cannot be delivered at once is dropped).
	Size    int64     `json:"size"`
	Time    int64     `json:"time"`
	Created time.Time `json:"created"`
}

// BacklogBound is the lowest size and age of ps; ok is false when ps is
// empty.
func BacklogBound(ps []*BacklogPolicy) (size int64, age time.Duration, ok bool) {
	for i, p := range ps {
		if i == 0 || p.Size < size {
			size = p.Size
		}
		if a := time.Duration(p.Time) * time.Second; i == 0 || a < age {
			age = a
		}
	}
	return size, age, len(ps) > 0
}

// BacklogPolicyChange is an update of a policy; nil fields keep their
// value.
type BacklogPolicyChange struct {
	Name, Description *string
	Size, Time        *int64
}

// NewBacklogPolicy is a policy to add; nil bounds take IoTDA's defaults.
type NewBacklogPolicy struct {
	Name, Description string
	Size, Time        *int64
}

func validateBacklogPolicy(p *BacklogPolicy) error {
	if err := checkName("policy_name", p.Name, maxBacklogPolicyName, false); err != nil {
		return err
	}
	if !utf8.ValidString(p.Description) || utf8.RuneCountInString(p.Description) > maxBacklogPolicyDescription {
		return invalid("description", "must be valid UTF-8 of at most %d characters", maxBacklogPolicyDescription)
	}
	if p.Size < 0 || p.Size > MaxBacklogSize {
		return invalid("backlog_size", "must be 0 to %d (bytes)", MaxBacklogSize)
	}
	if p.Time < 0 || p.Time > MaxBacklogTime {
		return invalid("backlog_time", "must be 0 to %d (seconds)", MaxBacklogTime)
	}
	return nil
}

// AddBacklogPolicy creates a backlog policy of project.
func (r *Registry) AddBacklogPolicy(ctx context.Context, project string, n NewBacklogPolicy) (*BacklogPolicy, error) {
	now := r.now().UTC()
	p := BacklogPolicy{ID: r.ids.Next(now), ProjectID: project, Name: n.Name, Description: n.Description,
		Size: backlogPolicyDefaultSize, Time: backlogPolicyDefaultTimeLimit, Created: now}
	if n.Size != nil {
		p.Size = *n.Size
	}
	if n.Time != nil {
		p.Time = *n.Time
	}
	if err := validateBacklogPolicy(&p); err != nil {
		return nil, err
	}
	err := r.write(ctx, func(w Writer) error {
		existing, err := scanBacklogPolicies(w, project)
		if err != nil {
			return err
		}
		if len(existing) >= MaxBacklogPoliciesPerProject {
			return fmt.Errorf("%w: a project has at most %d backlog policies", ErrQuota, MaxBacklogPoliciesPerProject)
		}
		return putBacklogPolicy(w, &p)
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// BacklogPolicy returns a backlog policy of project.
func (r *Registry) BacklogPolicy(ctx context.Context, project, id string) (*BacklogPolicy, error) {
	var p *BacklogPolicy
	err := r.view(ctx, func(rd Reader) error {
		var err error
		p, err = getBacklogPolicy(rd, project, id)
		return err
	})
	return p, err
}

// BacklogPolicies lists the project's backlog policies, oldest first.
func (r *Registry) BacklogPolicies(ctx context.Context, project string) ([]*BacklogPolicy, error) {
	var out []*BacklogPolicy
	err := r.view(ctx, func(rd Reader) error {
		var err error
		out, err = scanBacklogPolicies(rd, project)
		return err
	})
	return out, err
}

// UpdateBacklogPolicy changes a policy's name, description or bounds.
func (r *Registry) UpdateBacklogPolicy(ctx context.Context, project, id string, ch BacklogPolicyChange) (*BacklogPolicy, error) {
	var out *BacklogPolicy
	err := r.write(ctx, func(w Writer) error {
		p, err := getBacklogPolicy(w, project, id)
		if err != nil {
			return err
		}
		for _, f := range []struct{ dst, src *string }{{&p.Name, ch.Name}, {&p.Description, ch.Description}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		for _, f := range []struct{ dst, src *int64 }{{&p.Size, ch.Size}, {&p.Time, ch.Time}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		if err := validateBacklogPolicy(p); err != nil {
			return err
		}
		out = p
		return putBacklogPolicy(w, p)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteBacklogPolicy deletes a backlog policy.
func (r *Registry) DeleteBacklogPolicy(ctx context.Context, project, id string) error {
	return r.write(ctx, func(w Writer) error {
		if _, err := getBacklogPolicy(w, project, id); err != nil {
			return err
		}
		return w.Delete(backlogPolicyKey(project, id))
	})
}

// backlogPolicyRecords stores the project's EntityBacklogPolicy records.
var backlogPolicyRecords = projectRecords[BacklogPolicy]{fam: famBacklogPolicy, kind: EntityBacklogPolicy,
	ids:        func(p *BacklogPolicy) (string, string) { return p.ProjectID, p.ID },
	setProject: func(p *BacklogPolicy, project string) { p.ProjectID = project }}

func putBacklogPolicy(w Writer, p *BacklogPolicy) error { return backlogPolicyRecords.put(w, p) }

func getBacklogPolicy(rd Reader, project, id string) (*BacklogPolicy, error) {
	return backlogPolicyRecords.get(rd, project, id)
}

func scanBacklogPolicies(rd Reader, project string) ([]*BacklogPolicy, error) {
	return backlogPolicyRecords.scan(rd, project)
}
