package format

import (
	"fmt"
	"strconv"
	"strings"
)

// maxID is the largest LwM2M identifier (16 bits).
const maxID = 65535

// Path addresses an LwM2M node: /Object/Instance/Resource/ResourceInstance.
// Absent trailing levels are -1, so the root "/" is all -1 and "/3/0" is
// {3, 0, -1, -1}. Build paths with NewPath or ParsePath; the zero value is
// /0/0/0/0, not the root.
type Path struct {
	Object, Instance, Resource, ResourceInstance int32
}

// NewPath returns the path made of ids, from the object down; no ids gives
// the root. It panics when given more than four ids, a programming error.
func NewPath(ids ...uint16) Path {
	if len(ids) > 4 {
		panic(fmt.Sprintf("format.NewPath: %d ids, at most 4", len(ids)))
	}
	p := Path{-1, -1, -1, -1}
	for i, id := range ids {
		p = p.set(i, int32(id))
	}
	return p
}

// ParsePath parses the canonical text form "/", "/3", "/3/0", "/3/0/0" or
// "/3/0/0/1". Each id is decimal 0..65535 without sign or leading zeros, so
// that String gives back the input.
func ParsePath(s string) (Path, error) {
	p := Path{-1, -1, -1, -1}
	if s == "/" {
		return p, nil
	}
	if !strings.HasPrefix(s, "/") {
		return p, fmt.Errorf("path %q: must start with '/': %w", s, ErrInvalidPath)
	}
	rest := s[1:]
	for level := 0; ; level++ {
		seg, tail, more := strings.Cut(rest, "/")
		if level == 4 {
			return p, fmt.Errorf("path %q: more than 4 levels: %w", s, ErrInvalidPath)
		}
		id, err := parseID(seg)
		if err != nil {
			return p, fmt.Errorf("path %q: level %d: %v: %w", s, level+1, err, ErrInvalidPath)
		}
		p = p.set(level, int32(id))
		if !more {
			return p, nil
		}
		rest = tail
	}
}

// parseID parses one canonical decimal identifier.
func parseID(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("empty id")
	}
	if len(s) > 5 {
		return 0, fmt.Errorf("id %q too long", s)
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("id %q has a leading zero", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("id %q is not a decimal number", s)
		}
	}
	n, _ := strconv.Atoi(s) // at most 5 digits, cannot fail
	if n > maxID {
		return 0, fmt.Errorf("id %d exceeds %d", n, maxID)
	}
	return uint16(n), nil
}

// String returns the canonical text form, e.g. "/3/0/0"; the root is "/".
func (p Path) String() string {
	d := p.Depth()
	if d == 0 {
		return "/"
	}
	var b strings.Builder
	for i := 0; i < d; i++ {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(p.ID(i))))
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler, so a Path is a JSON string.
func (p Path) MarshalText() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler using ParsePath.
func (p *Path) UnmarshalText(b []byte) error {
	q, err := ParsePath(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Depth returns how many levels are present: 0 for the root up to 4 for a
// resource instance. It counts the leading present levels only.
func (p Path) Depth() int {
	for i := 0; i < 4; i++ {
		if p.ID(i) < 0 {
			return i
		}
	}
	return 4
}

// ID returns the id at level 0 (object) to 3 (resource instance), -1 when
// absent or out of range.
func (p Path) ID(level int) int32 {
	switch level {
	case 0:
		return p.Object
	case 1:
		return p.Instance
	case 2:
		return p.Resource
	case 3:
		return p.ResourceInstance
	}
	return -1
}

// Contains reports whether q is p or lies below p.
func (p Path) Contains(q Path) bool {
	d := p.Depth()
	if q.Depth() < d {
		return false
	}
	for i := 0; i < d; i++ {
		if p.ID(i) != q.ID(i) {
			return false
		}
	}
	return true
}

// Child returns p extended by one level with id.
func (p Path) Child(id uint16) Path {
	d := p.Depth()
	if d == 4 {
		return p
	}
	return p.set(d, int32(id))
}

func (p Path) set(level int, id int32) Path {
	switch level {
	case 0:
		p.Object = id
	case 1:
		p.Instance = id
	case 2:
		p.Resource = id
	case 3:
		p.ResourceInstance = id
	}
	return p
}

// validate checks ranges and that absent levels only trail present ones,
// which a Path built by hand might violate.
func (p Path) validate() error {
	absent := false
	for i := 0; i < 4; i++ {
		id := p.ID(i)
		switch {
		case id == -1:
			absent = true
		case id < -1 || id > maxID:
			return fmt.Errorf("path level %d id %d out of range 0..%d: %w", i+1, id, maxID, ErrInvalidPath)
		case absent:
			return fmt.Errorf("path {%d %d %d %d}: level %d present below an absent level: %w",
				p.Object, p.Instance, p.Resource, p.ResourceInstance, i+1, ErrInvalidPath)
		}
	}
	return nil
}
