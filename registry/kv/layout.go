package kv

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"
)

// A Family describes one key family of a store's users, for engines that
// keep each family apart (PostgreSQL's pgkv: one table each, typed
// columns): the family's keys are Prefix, then the parts in order, each
// after a 0 byte except the first. Engines that ignore it (Badger) keep
// the ordered keys as they are; the layout never changes what a key
// means, only where an engine may put it.
//
// Order: an engine orders a family's rows by its parts as a tuple, text
// parts by their bytes, binary parts by their fixed-length bytes. That
// is the byte order of the keys because text parts hold no 0 byte and
// binary parts have a fixed length; Split refuses keys that break this.
type Family struct {
	// Name is the family's short name in keys and errors ("d", "ep").
	Name string
	// Prefix is the exact bytes every key of the family starts with.
	// Empty means Name and a 0 byte (Name alone for a family without
	// parts).
	Prefix string
	// Table names the family's table in engines that have tables.
	Table string
	// Parts are the key's parts after the prefix, in order.
	Parts []Column
	// Value is the value's column; Kind None for families whose value is
	// always empty.
	Value Column
}

// Kind is the type of a key part or a value.
type Kind int

const (
	// None: no column (a value that is always empty).
	None Kind = iota
	// Text is a UTF-8 string without 0 bytes.
	Text
	// Binary is bytes: fixed length (Column.Len) for a key part, any
	// length for a value.
	Binary
)

func (k Kind) String() string {
	switch k {
	case Text:
		return "text"
	case Binary:
		return "binary"
	}
	return "none"
}

// Column is a key part or a value.
type Column struct {
	Name string
	Kind Kind
	// Len is a Binary key part's length in bytes.
	Len int
	// Optional marks the last part of keys that may end before it (the
	// unsharded counter keys of earlier versions): absent, it reads as
	// the empty string, so a present part must not be empty.
	Optional bool
}

// TextCol, BinaryCol, OptionalText, BytesValue and TextValue declare
// columns.
func TextCol(name string) Column          { return Column{Name: name, Kind: Text} }
func BinaryCol(name string, n int) Column { return Column{Name: name, Kind: Binary, Len: n} }
func OptionalText(name string) Column     { return Column{Name: name, Kind: Text, Optional: true} }
func BytesValue(name string) Column       { return Column{Name: name, Kind: Binary} }
func TextValue(name string) Column        { return Column{Name: name, Kind: Text} }

// KeyPrefix is the bytes every key of the family starts with.
func (f *Family) KeyPrefix() string {
	switch {
	case f.Prefix != "":
		return f.Prefix
	case len(f.Parts) == 0:
		return f.Name
	}
	return f.Name + "\x00"
}

// Member reports whether key is one of f's keys by its prefix (a family
// without parts has one key, its prefix).
func (f *Family) Member(key []byte) bool {
	p := f.KeyPrefix()
	if len(f.Parts) == 0 {
		return string(key) == p
	}
	return len(key) >= len(p) && string(key[:len(p)]) == p
}

// LayoutError is a key its family's layout cannot hold: a bug of the code
// that built it (or of the layout), never stored elsewhere.
type LayoutError struct {
	Family string
	Key    []byte
	Reason string
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("kv: key %q of family %q: %s", e.Key, e.Family, e.Reason)
}

func (f *Family) fail(key []byte, format string, a ...any) error {
	return &LayoutError{Family: f.Name, Key: bytes.Clone(key), Reason: fmt.Sprintf(format, a...)}
}

// Split returns the parts of a key of f (sub-slices of key; an absent
// optional part is empty), or a *LayoutError.
func (f *Family) Split(key []byte) ([][]byte, error) {
	p := f.KeyPrefix()
	if len(key) < len(p) || string(key[:len(p)]) != p || (len(f.Parts) == 0 && len(key) != len(p)) {
		return nil, f.fail(key, "not of the family")
	}
	rest := key[len(p):]
	parts := make([][]byte, len(f.Parts))
	for i, c := range f.Parts {
		if i > 0 {
			if len(rest) == 0 && c.Optional {
				break
			}
			if len(rest) == 0 || rest[0] != 0 {
				return nil, f.fail(key, "no separator before part %q", c.Name)
			}
			rest = rest[1:]
		}
		switch c.Kind {
		case Text:
			n := bytes.IndexByte(rest, 0)
			if n < 0 {
				n = len(rest)
			} else if i == len(f.Parts)-1 {
				return nil, f.fail(key, "text part %q holds a 0 byte", c.Name)
			}
			if !utf8.Valid(rest[:n]) {
				return nil, f.fail(key, "text part %q is not UTF-8", c.Name)
			}
			if c.Optional && n == 0 {
				return nil, f.fail(key, "optional part %q is present but empty", c.Name)
			}
			parts[i], rest = rest[:n], rest[n:]
		default:
			if len(rest) < c.Len {
				return nil, f.fail(key, "binary part %q is shorter than %d bytes", c.Name, c.Len)
			}
			parts[i], rest = rest[:c.Len], rest[c.Len:]
		}
	}
	if len(rest) > 0 {
		return nil, f.fail(key, "%d bytes after the last part", len(rest))
	}
	return parts, nil
}

// AppendKey appends the key of f with the given parts (as Split returns
// them) to b.
func (f *Family) AppendKey(b []byte, parts [][]byte) []byte {
	b = append(b, f.KeyPrefix()...)
	for i, p := range parts {
		if i > 0 {
			if len(p) == 0 && f.Parts[i].Optional {
				break
			}
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// Bound describes a range bound (a key or any byte string that starts
// with the family's prefix) as a bound on the tuple of the family's
// parts: for the family's keys k, k >= bound exactly when
// tuple(k)[:len(Values)] >= Values (> when Strict). When !Exact the
// bound could only be loosened (a text part that is not UTF-8, an
// optional part): tuple(k)[:len(Values)] >= Values holds for every k >=
// bound and tuple(k)[:len(Values)] <= Values for every k < bound, and
// the caller filters the rows by their keys.
type Bound struct {
	Values [][]byte
	Strict bool
	Exact  bool
}

// BoundOf describes bound (which must start with the family's prefix).
func (f *Family) BoundOf(bound []byte) Bound {
	rest := bound[len(f.KeyPrefix()):]
	if len(rest) == 0 {
		return Bound{Exact: true}
	}
	var vals [][]byte
	for i, c := range f.Parts {
		if i > 0 {
			if len(rest) == 0 {
				return Bound{Values: vals, Exact: !c.Optional}
			}
			if rest[0] != 0 {
				// Every key whose parts so far equal vals has a 0 byte here:
				// it is below bound.
				return Bound{Values: vals, Strict: true, Exact: true}
			}
			rest = rest[1:]
		}
		if c.Optional || (c.Kind == Text && !utf8.Valid(textPart(rest))) {
			return Bound{Values: vals}
		}
		switch c.Kind {
		case Text:
			n := len(textPart(rest))
			vals, rest = append(vals, rest[:n]), rest[n:]
		default:
			n := min(len(rest), c.Len)
			vals, rest = append(vals, rest[:n]), rest[n:]
		}
		if len(rest) == 0 {
			return Bound{Values: vals, Exact: true}
		}
	}
	// Bytes after a whole key: every key with these parts is below.
	return Bound{Values: vals, Strict: true, Exact: true}
}

func textPart(b []byte) []byte {
	if n := bytes.IndexByte(b, 0); n >= 0 {
		return b[:n]
	}
	return b
}

// Pinned returns how many leading parts a scan prefix (which starts with
// the family's prefix) fixes, and their values: each is followed by a
// separator in prefix.
func (f *Family) Pinned(prefix []byte) [][]byte {
	rest := prefix[len(f.KeyPrefix()):]
	var vals [][]byte
	for i, c := range f.Parts {
		if i > 0 {
			if len(rest) == 0 || rest[0] != 0 {
				return vals
			}
			rest = rest[1:]
		}
		var n int
		switch c.Kind {
		case Text:
			n = bytes.IndexByte(rest, 0)
			if n < 0 || c.Optional || !utf8.Valid(rest[:n]) {
				return vals
			}
		default:
			if len(rest) < c.Len {
				return vals
			}
			n = c.Len
		}
		if i == len(f.Parts)-1 || len(rest) == n || rest[n] != 0 {
			return vals
		}
		vals, rest = append(vals, rest[:n]), rest[n:]
	}
	return vals
}

// CheckLayout checks a layout: named families and columns, unique
// tables, Optional only on a last text part, binary parts of a length,
// and no family's prefix a prefix of another's (a key belongs to one
// family at most).
func CheckLayout(fams []Family) error {
	tables := map[string]bool{}
	for i := range fams {
		f := &fams[i]
		if f.Name == "" || f.Table == "" {
			return fmt.Errorf("kv layout: family %d has no name or no table", i)
		}
		if tables[f.Table] {
			return fmt.Errorf("kv layout: table %q declared twice", f.Table)
		}
		tables[f.Table] = true
		for j, c := range f.Parts {
			switch {
			case c.Name == "":
				return fmt.Errorf("kv layout: family %q: part %d has no name", f.Name, j)
			case c.Kind != Text && c.Kind != Binary:
				return fmt.Errorf("kv layout: family %q: part %q has no kind", f.Name, c.Name)
			case c.Kind == Binary && c.Len <= 0:
				return fmt.Errorf("kv layout: family %q: binary part %q has no length", f.Name, c.Name)
			case c.Optional && (c.Kind != Text || j != len(f.Parts)-1 || j == 0):
				return fmt.Errorf("kv layout: family %q: only a last text part after another may be optional", f.Name)
			}
		}
		if f.Value.Kind != None && f.Value.Name == "" {
			return fmt.Errorf("kv layout: family %q: value column has no name", f.Name)
		}
		for j := range fams {
			if p, q := fams[i].KeyPrefix(), fams[j].KeyPrefix(); i != j && len(p) <= len(q) && q[:len(p)] == p &&
				(len(fams[i].Parts) > 0 || p == q) {
				return fmt.Errorf("kv layout: the keys of family %q and %q overlap", fams[i].Name, fams[j].Name)
			}
		}
	}
	return nil
}

// SortLayout returns the families in the byte order of their prefixes,
// which is the order of their key ranges.
func SortLayout(fams []Family) []Family {
	out := slices.Clone(fams)
	slices.SortFunc(out, func(a, b Family) int { return bytes.Compare([]byte(a.KeyPrefix()), []byte(b.KeyPrefix())) })
	return out
}
