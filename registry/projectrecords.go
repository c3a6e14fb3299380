package registry

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry/kv"
)

// projectRecords stores one kind of project-scoped JSON record under
// family fam, keyed by project and id (forwarding policies): the codec
// each such kind would otherwise repeat.
type projectRecords[T any] struct {
	fam  string
	kind Entity
	// ids returns the record's project and id; setProject fills the
	// project, which the stored JSON leaves to the key.
	ids        func(*T) (project, id string)
	setProject func(*T, string)
}

func (s projectRecords[T]) put(w Writer, v *T) error {
	project, id := s.ids(v)
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", s.kind, id, err)
	}
	return w.Set(key(s.fam, project, id), b)
}

func (s projectRecords[T]) get(rd Reader, project, id string) (*T, error) {
	v, err := rd.Get(key(s.fam, project, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: s.kind, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", s.kind, id, err)
	}
	out := new(T)
	if err := json.Unmarshal(v, out); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", s.kind, id, err)
	}
	s.setProject(out, project)
	return out, nil
}

// scan lists the project's records in key order.
func (s projectRecords[T]) scan(rd Reader, project string) ([]*T, error) {
	var out []*T
	err := rd.Scan(prefixKey(s.fam, project), nil, false, func(_, v []byte) (bool, error) {
		rec := new(T)
		if err := json.Unmarshal(v, rec); err != nil {
			return false, fmt.Errorf("decode %s of %s: %w", s.kind, project, err)
		}
		s.setProject(rec, project)
		out = append(out, rec)
		return true, nil
	})
	return out, err
}
