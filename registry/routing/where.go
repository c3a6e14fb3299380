// Package routing holds what a routing rule decides about an event that
// needs no store and no protocol: the rule's where condition, parsed once
// and evaluated against each push envelope.
package routing

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// The where language is the subset of IoTDA's SQL-like rule condition that
// iotgate implements, over the push envelope as JSON:
//
//	cond    := or
//	or      := and { OR and }
//	and     := not { AND not }
//	not     := NOT not | '(' cond ')' | compare
//	compare := operand op operand | operand IS [NOT] NULL
//	op      := = | != | <> | < | <= | > | >=
//	operand := path | 'string' | number | TRUE | FALSE | NULL
//	path    := name { '.' name | '[' index ']' }
//
// Keywords are case-insensitive; a string doubles '' to hold a quote. A
// path starts at one of the envelope's fields (resource, event,
// event_time, event_time_ms, request_id, notify_data); a path that is
// missing from an event is NULL, and any comparison with NULL is false
// (SQL's rule), except IS NULL. Numbers compare as numbers, strings
// lexicographically; values of different types are never equal.

// MaxWhereLen is IoTDA's bound on a where condition.
const MaxWhereLen = 2500

// envelopeFields are the names a path may start with.
var envelopeFields = map[string]bool{"resource": true, "event": true, "event_time": true,
	"event_time_ms": true, "request_id": true, "notify_data": true}

// SyntaxError says where and why a condition does not parse.
type SyntaxError struct {
	Pos int // byte offset in the condition
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("at character %d: %s", e.Pos+1, e.Msg) }

// Condition is a parsed where condition; the zero Condition (from an
// empty where) matches every event. It is safe for concurrent use.
type Condition struct{ root node }

// Parse compiles a where condition; an empty one matches everything.
func Parse(src string) (Condition, error) {
	if strings.TrimSpace(src) == "" {
		return Condition{}, nil
	}
	if len(src) > MaxWhereLen {
		return Condition{}, &SyntaxError{Pos: MaxWhereLen, Msg: fmt.Sprintf("condition is longer than %d characters", MaxWhereLen)}
	}
	toks, err := lex(src)
	if err != nil {
		return Condition{}, err
	}
	p := &parser{toks: toks}
	n, err := p.or()
	if err != nil {
		return Condition{}, err
	}
	if t := p.peek(); t.kind != tEOF {
		return Condition{}, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("unexpected %s after a complete condition", t)}
	}
	return Condition{root: n}, nil
}

// Match evaluates the condition against an envelope decoded from JSON
// (objects as map[string]any, arrays as []any, numbers as float64).
func (c Condition) Match(envelope map[string]any) bool {
	if c.root == nil {
		return true
	}
	return c.root.eval(envelope)
}

// Empty reports whether the condition matches everything.
func (c Condition) Empty() bool { return c.root == nil }

type node interface{ eval(env map[string]any) bool }

type (
	orNode  struct{ a, b node }
	andNode struct{ a, b node }
	notNode struct{ a node }
	cmpNode struct {
		op   string
		l, r operand
	}
	nullNode struct {
		v   operand
		not bool
	}
)

func (n orNode) eval(e map[string]any) bool  { return n.a.eval(e) || n.b.eval(e) }
func (n andNode) eval(e map[string]any) bool { return n.a.eval(e) && n.b.eval(e) }
func (n notNode) eval(e map[string]any) bool { return !n.a.eval(e) }
func (n nullNode) eval(e map[string]any) bool {
	return (n.v.value(e) == nil) != n.not
}

func (n cmpNode) eval(e map[string]any) bool {
	l, r := n.l.value(e), n.r.value(e)
	if l == nil || r == nil {
		return false
	}
	var c int
	switch lv := l.(type) {
	case float64:
		rv, ok := r.(float64)
		if !ok {
			return n.op == "!="
		}
		c = compareOrdered(lv, rv)
	case string:
		rv, ok := r.(string)
		if !ok {
			return n.op == "!="
		}
		c = strings.Compare(lv, rv)
	case bool:
		rv, ok := r.(bool)
		if !ok {
			return n.op == "!="
		}
		switch n.op {
		case "=":
			return lv == rv
		case "!=":
			return lv != rv
		}
		return false // booleans have no order
	default: // an object or array: only its absence or presence is testable
		return false
	}
	switch n.op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

func compareOrdered(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// operand is a literal (lit set) or a path into the envelope.
type operand struct {
	path  []step
	lit   any
	isLit bool
}

type step struct {
	name  string
	index int // when name is ""
}

func (o operand) value(env map[string]any) any {
	if o.isLit {
		return o.lit
	}
	var cur any = env
	for _, s := range o.path {
		switch v := cur.(type) {
		case map[string]any:
			if s.name == "" {
				return nil
			}
			cur = v[s.name]
		case []any:
			if s.name != "" || s.index >= len(v) {
				return nil
			}
			cur = v[s.index]
		default:
			return nil
		}
	}
	return cur
}

// Lexer.

type tokKind uint8

const (
	tEOF tokKind = iota
	tName
	tString
	tNumber
	tOp
	tLParen
	tRParen
	tDot
	tLBracket
	tRBracket
)

type token struct {
	kind tokKind
	text string
	pos  int
	num  float64
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of condition"
	case tString:
		return "string '" + t.text + "'"
	}
	return "'" + t.text + "'"
}

func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks, i = append(toks, token{kind: tLParen, text: "(", pos: i}), i+1
		case c == ')':
			toks, i = append(toks, token{kind: tRParen, text: ")", pos: i}), i+1
		case c == '[':
			toks, i = append(toks, token{kind: tLBracket, text: "[", pos: i}), i+1
		case c == ']':
			toks, i = append(toks, token{kind: tRBracket, text: "]", pos: i}), i+1
		case c == '.' && !(i+1 < len(src) && isDigit(src[i+1]) && (len(toks) == 0 || toks[len(toks)-1].kind == tOp)):
			toks, i = append(toks, token{kind: tDot, text: ".", pos: i}), i+1
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(src) {
					return nil, &SyntaxError{Pos: i, Msg: "string is not closed (missing ')"}
				}
				if src[j] == '\'' {
					if j+1 < len(src) && src[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(src[j])
				j++
			}
			toks, i = append(toks, token{kind: tString, text: b.String(), pos: i}), j+1
		case c == '"':
			return nil, &SyntaxError{Pos: i, Msg: `strings are quoted with ' (a " is not part of the language)`}
		case c == '=' || c == '<' || c == '>' || c == '!':
			raw := src[i : i+1]
			if i+1 < len(src) && (src[i+1] == '=' || (c == '<' && src[i+1] == '>')) {
				raw = src[i : i+2]
			}
			op := raw
			switch raw {
			case "!":
				return nil, &SyntaxError{Pos: i, Msg: "'!' must be followed by '=' (use NOT to negate)"}
			case "==":
				return nil, &SyntaxError{Pos: i, Msg: "'==' is not an operator (equality is '=')"}
			case "<>":
				op = "!="
			}
			toks, i = append(toks, token{kind: tOp, text: op, pos: i}), i+len(raw)
		case isDigit(c) || c == '-' || c == '.':
			j := i + 1
			for j < len(src) && (isDigit(src[j]) || src[j] == '.' || src[j] == 'e' || src[j] == 'E' ||
				((src[j] == '-' || src[j] == '+') && (src[j-1] == 'e' || src[j-1] == 'E'))) {
				j++
			}
			n, err := strconv.ParseFloat(src[i:j], 64)
			if err != nil {
				return nil, &SyntaxError{Pos: i, Msg: fmt.Sprintf("%q is not a number", src[i:j])}
			}
			toks, i = append(toks, token{kind: tNumber, text: src[i:j], pos: i, num: n}), j
		case isNameStart(rune(c)):
			j := i + 1
			for j < len(src) && isNamePart(rune(src[j])) {
				j++
			}
			toks, i = append(toks, token{kind: tName, text: src[i:j], pos: i}), j
		default:
			return nil, &SyntaxError{Pos: i, Msg: fmt.Sprintf("unexpected character %q", c)}
		}
	}
	return append(toks, token{kind: tEOF, pos: len(src)}), nil
}

func isDigit(c byte) bool              { return c >= '0' && c <= '9' }
func isNameStart(r rune) bool          { return r == '_' || (r < unicode.MaxASCII && unicode.IsLetter(r)) }
func isNamePart(r rune) bool           { return isNameStart(r) || (r >= '0' && r <= '9') }
func keyword(t token) string           { return strings.ToUpper(t.text) }
func isKeyword(t token, k string) bool { return t.kind == tName && keyword(t) == k }

// Parser.

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) or() (node, error) {
	n, err := p.and()
	if err != nil {
		return nil, err
	}
	for isKeyword(p.peek(), "OR") {
		p.next()
		m, err := p.and()
		if err != nil {
			return nil, err
		}
		n = orNode{n, m}
	}
	return n, nil
}

func (p *parser) and() (node, error) {
	n, err := p.not()
	if err != nil {
		return nil, err
	}
	for isKeyword(p.peek(), "AND") {
		p.next()
		m, err := p.not()
		if err != nil {
			return nil, err
		}
		n = andNode{n, m}
	}
	return n, nil
}

func (p *parser) not() (node, error) {
	t := p.peek()
	switch {
	case isKeyword(t, "NOT"):
		p.next()
		n, err := p.not()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case t.kind == tLParen:
		p.next()
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, &SyntaxError{Pos: c.pos, Msg: fmt.Sprintf("expected ')' to close the '(' at character %d, found %s", t.pos+1, c)}
		}
		return n, nil
	}
	return p.compare()
}

func (p *parser) compare() (node, error) {
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	t := p.next()
	if isKeyword(t, "IS") {
		not := false
		if isKeyword(p.peek(), "NOT") {
			p.next()
			not = true
		}
		if n := p.next(); !isKeyword(n, "NULL") {
			return nil, &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("expected NULL after IS, found %s", n)}
		}
		return nullNode{v: l, not: not}, nil
	}
	if t.kind != tOp {
		if t.kind == tName {
			return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("unsupported operator %s (supported: = != <> < <= > >= IS [NOT] NULL)", t)}
		}
		return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected a comparison operator (= != <> < <= > >=), found %s", t)}
	}
	r, err := p.operand()
	if err != nil {
		return nil, err
	}
	if l.isLit && r.isLit {
		return nil, &SyntaxError{Pos: t.pos, Msg: "a comparison must name a field of the message on one side"}
	}
	return cmpNode{op: t.text, l: l, r: r}, nil
}

func (p *parser) operand() (operand, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return operand{lit: t.text, isLit: true}, nil
	case tNumber:
		return operand{lit: t.num, isLit: true}, nil
	case tName:
		switch keyword(t) {
		case "TRUE":
			return operand{lit: true, isLit: true}, nil
		case "FALSE":
			return operand{lit: false, isLit: true}, nil
		case "NULL":
			return operand{}, &SyntaxError{Pos: t.pos, Msg: "compare with NULL using IS NULL or IS NOT NULL"}
		case "AND", "OR", "NOT", "IS":
			return operand{}, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected a field or a value, found %s", t)}
		}
		return p.path(t)
	}
	return operand{}, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected a field or a value, found %s", t)}
}

func (p *parser) path(first token) (operand, error) {
	if !envelopeFields[first.text] {
		return operand{}, &SyntaxError{Pos: first.pos, Msg: fmt.Sprintf("unknown field %q: a field starts with resource, event, event_time, event_time_ms, request_id or notify_data", first.text)}
	}
	o := operand{path: []step{{name: first.text}}}
	for {
		switch p.peek().kind {
		case tDot:
			p.next()
			n := p.next()
			if n.kind != tName {
				return operand{}, &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("expected a field name after '.', found %s", n)}
			}
			o.path = append(o.path, step{name: n.text})
		case tLBracket:
			p.next()
			n := p.next()
			idx, err := strconv.Atoi(n.text)
			if n.kind != tNumber || err != nil || idx < 0 {
				return operand{}, &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("expected an array index (0, 1, ...) after '[', found %s", n)}
			}
			if c := p.next(); c.kind != tRBracket {
				return operand{}, &SyntaxError{Pos: c.pos, Msg: fmt.Sprintf("expected ']', found %s", c)}
			}
			o.path = append(o.path, step{index: idx})
		default:
			return o, nil
		}
	}
}
