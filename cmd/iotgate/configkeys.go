package main

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// keyError is a configuration key that is unknown or holds a value of
// the wrong kind, named by its path in the file (mqtt.tls_listen) and
// its line, never by a Go type.
type keyError struct {
	Path string
	Line int
	Msg  string
}

func (e *keyError) Error() string { return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg) }

// checkKeys walks the YAML node n against t, the type it decodes into,
// and returns the first key that names no field (with the nearest known
// key as a suggestion) or whose value cannot be read as its field's
// kind. path is n's own path ("" at the top).
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case 0: // an empty file
		return nil
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := checkKeys(c, t, path); err != nil {
				return err
			}
		}
		return nil
	case yaml.AliasNode:
		return checkKeys(n.Alias, t, path)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an empty section keeps its defaults
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			break
		}
		if n.Kind != yaml.MappingNode {
			return &keyError{Path: orTop(path), Line: n.Line, Msg: "want a section of keys, found " + describe(n)}
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				return &keyError{Path: join(path, k.Value), Line: k.Line, Msg: "unknown key" + suggest(k.Value, fields)}
			}
			if err := checkKeys(v, f.Type, join(path, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return &keyError{Path: orTop(path), Line: n.Line, Msg: "want a list, found " + describe(n)}
		}
		for i, c := range n.Content {
			if err := checkKeys(c, t.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return &keyError{Path: orTop(path), Line: n.Line, Msg: "want a mapping, found " + describe(n)}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
		return nil
	}
	// A scalar: read it as the real decode will.
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return &keyError{Path: orTop(path), Line: n.Line, Msg: fmt.Sprintf("%s is not %s", describe(n), kindOf(t))}
	}
	return nil
}

// yamlFields are t's fields by YAML key.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name) // yaml.v3's default
		}
		m[name] = f
	}
	return m
}

// suggest names the known key nearest to key, when one is near enough
// to be a typo of it.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestD := "", len(key)/3+2
	for name := range fields {
		if d := editDistance(key, name); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// kindOf says what a value of t must be, in the file's terms.
func kindOf(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration (such as 30s, 5m or 1h)"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.Kind().String()
}

// describe is a node as the file shows it.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}
