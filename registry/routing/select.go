package routing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// The select language is IoTDA's rule projection: what of the envelope
// is pushed.
//
//	select := item { ',' item }
//	item   := '*' | path [AS alias] | GET_TAG('key') AS alias
//	        | 'string' AS alias | number AS alias
//
// '*' (or an empty select) is the whole envelope; with other items, its
// fields come first. A path without AS is named by its text, as IoTDA's
// ("notify_data.body.content"); a path missing from an event is left
// out. An alias holds at most 32 letters, digits and '_'; names may not
// repeat.

// Select bounds.
const (
	MaxSelectLen = 2500
	maxAlias     = 32
)

// Projection is a compiled select; the zero Projection (from "" or "*")
// pushes the whole envelope. It is safe for concurrent use.
type Projection struct{ items []selectItem }

type selectItem struct {
	all   bool   // '*'
	key   []byte // `"name":`
	path  string // gjson path; "" for a constant
	value []byte // a constant's JSON
}

// ParseSelect compiles a select.
func ParseSelect(src string) (Projection, error) {
	if s := strings.TrimSpace(src); s == "" || s == "*" {
		return Projection{}, nil
	}
	if len(src) > MaxSelectLen {
		return Projection{}, &SyntaxError{Pos: MaxSelectLen, Msg: fmt.Sprintf("select is longer than %d characters", MaxSelectLen)}
	}
	toks, err := lex(src)
	if err != nil {
		return Projection{}, err
	}
	p := &selectParser{toks: toks, names: make(map[string]int)}
	var out Projection
	for {
		it, err := p.item()
		if err != nil {
			return Projection{}, err
		}
		out.items = append(out.items, it)
		switch t := p.next(); t.kind {
		case tEOF:
			return out, p.checkStar()
		case tComma:
		default:
			return Projection{}, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected ',' or the end of select, found %s", t)}
		}
	}
}

// All reports whether the projection pushes the whole envelope.
func (p Projection) All() bool { return len(p.items) == 0 }

// Apply returns what the projection keeps of envelope (JSON), as a JSON
// object appended to dst.
func (p Projection) Apply(dst, envelope []byte) []byte {
	if p.All() {
		return append(dst, envelope...)
	}
	dst = append(dst, '{')
	first := true
	sep := func() {
		if !first {
			dst = append(dst, ',')
		}
		first = false
	}
	for _, it := range p.items {
		switch {
		case it.all:
			fields := bytes.TrimSpace(envelope)
			if len(fields) < 2 {
				continue
			}
			if fields = bytes.TrimSpace(fields[1 : len(fields)-1]); len(fields) > 0 {
				sep()
				dst = append(dst, fields...)
			}
		case it.path != "":
			r := gjson.GetBytes(envelope, it.path)
			if !r.Exists() {
				continue
			}
			sep()
			dst = append(append(dst, it.key...), r.Raw...)
		default:
			sep()
			dst = append(append(dst, it.key...), it.value...)
		}
	}
	return append(dst, '}')
}

type selectParser struct {
	toks  []token
	i     int
	names map[string]int // selected names, at their offsets
}

func (p *selectParser) peek() token { return p.toks[p.i] }
func (p *selectParser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *selectParser) item() (selectItem, error) {
	t := p.next()
	switch t.kind {
	case tStar:
		if err := p.claim(t, "*"); err != nil {
			return selectItem{}, err
		}
		return selectItem{all: true}, nil
	case tString, tNumber:
		v, err := constant(t)
		if err != nil {
			return selectItem{}, err
		}
		alias, err := p.alias(t, true)
		if err != nil {
			return selectItem{}, err
		}
		return selectItem{key: jsonKey(alias), value: v}, nil
	case tName:
		if t.text == fnGetTag && p.peek().kind == tLParen {
			return p.getTag(t)
		}
		path, text, err := p.path(t)
		if err != nil {
			return selectItem{}, err
		}
		name, err := p.alias(t, false)
		if err != nil {
			return selectItem{}, err
		}
		if name == "" {
			name = text
			if err := p.claim(t, name); err != nil {
				return selectItem{}, err
			}
		}
		return selectItem{key: jsonKey(name), path: path}, nil
	}
	return selectItem{}, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected '*', a field, GET_TAG or a constant, found %s", t)}
}

func (p *selectParser) getTag(fn token) (selectItem, error) {
	p.next() // (
	key := p.next()
	if key.kind != tString || !validTagKey(key.text) {
		return selectItem{}, &SyntaxError{Pos: key.pos, Msg: "GET_TAG takes a tag key: a string of 1 to 64 letters, digits, '_', '-' or '.'"}
	}
	if c := p.next(); c.kind != tRParen {
		return selectItem{}, &SyntaxError{Pos: c.pos, Msg: fmt.Sprintf("expected ')' after GET_TAG's key, found %s", c)}
	}
	alias, err := p.alias(fn, true)
	if err != nil {
		return selectItem{}, err
	}
	return selectItem{key: jsonKey(alias), path: tagPath(key.text)}, nil
}

// path reads a path starting at first; it returns its gjson path and its
// text.
func (p *selectParser) path(first token) (string, string, error) {
	if !envelopeFields[first.text] {
		return "", "", &SyntaxError{Pos: first.pos, Msg: fmt.Sprintf("unknown field %q: %s", first.text, fieldHint)}
	}
	gj, text := []string{first.text}, first.text
	for {
		switch p.peek().kind {
		case tDot:
			p.next()
			n := p.next()
			if n.kind != tName {
				return "", "", &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("expected a field name after '.', found %s", n)}
			}
			gj, text = append(gj, n.text), text+"."+n.text
		case tLBracket:
			p.next()
			n := p.next()
			idx, err := strconv.Atoi(n.text)
			if n.kind != tNumber || err != nil || idx < 0 {
				return "", "", &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("expected an array index (0, 1, ...) after '[', found %s", n)}
			}
			if c := p.next(); c.kind != tRBracket {
				return "", "", &SyntaxError{Pos: c.pos, Msg: fmt.Sprintf("expected ']', found %s", c)}
			}
			gj, text = append(gj, strconv.Itoa(idx)), text+"["+strconv.Itoa(idx)+"]"
		default:
			return strings.Join(gj, "."), text, nil
		}
	}
}

// alias reads "AS name" if there (required for constants and functions).
func (p *selectParser) alias(item token, required bool) (string, error) {
	if !isKeyword(p.peek(), "AS") {
		if required {
			return "", &SyntaxError{Pos: p.peek().pos, Msg: fmt.Sprintf("%s needs a name: add AS name", item)}
		}
		return "", nil
	}
	p.next()
	n := p.next()
	if n.kind != tName {
		return "", &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("expected a name after AS, found %s", n)}
	}
	if len(n.text) > maxAlias {
		return "", &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("a name after AS has at most %d characters", maxAlias)}
	}
	return n.text, p.claim(n, n.text)
}

func (p *selectParser) claim(at token, name string) error {
	if _, ok := p.names[name]; ok {
		return &SyntaxError{Pos: at.pos, Msg: fmt.Sprintf("%q is selected twice", name)}
	}
	p.names[name] = at.pos
	return nil
}

// checkStar refuses a name that would repeat a field '*' selects.
func (p *selectParser) checkStar() error {
	if _, ok := p.names["*"]; !ok {
		return nil
	}
	for name, pos := range p.names {
		if envelopeFields[name] {
			return &SyntaxError{Pos: pos, Msg: fmt.Sprintf("%q is selected twice: '*' holds it", name)}
		}
	}
	return nil
}

func constant(t token) ([]byte, error) {
	if t.kind == tString {
		return json.Marshal(t.text)
	}
	f, err := strconv.ParseFloat(t.text, 64)
	if err != nil {
		return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("%q is not a number", t.text)}
	}
	return json.Marshal(f)
}

func jsonKey(name string) []byte {
	b, _ := json.Marshal(name) // a string always encodes
	return append(b, ':')
}
