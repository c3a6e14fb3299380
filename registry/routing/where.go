// Package routing holds what a routing rule decides about an event that
// needs no store and no protocol: the rule's where condition and its
// select projection, each compiled once and applied to each push envelope
// (IoTDA's push message, as JSON).
package routing

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// The where language is IoTDA's rule condition over the push envelope:
//
//	cond    := cond OR cond | cond AND cond | NOT cond | '(' cond ')'
//	         | operand op operand | operand IS [NOT] NULL
//	         | STARTS_WITH(operand, operand) | ENDS_WITH(operand, operand)
//	         | CONTAINS_TAG('key')
//	op      := = | != | <> | < | <= | > | >=
//	operand := path | 'string' | number | TRUE | FALSE | GET_TAG('key')
//	path    := field { '.' name | '[' index ']' }
//
// Keywords are case-insensitive; a string doubles '' to hold a quote. A
// path starts at one of the envelope's fields (resource, event,
// event_time, event_time_ms, request_id, notify_data); a path missing
// from an event is NULL, and any comparison with NULL is false (SQL's
// rule), except IS NULL. Numbers compare as numbers, strings
// lexicographically; values of different types are never equal, and an
// object or array is only present or absent. GET_TAG is the device tag's
// value (NULL without the tag), CONTAINS_TAG whether the device has it.
//
// A clause is lexed here (lex.go), rewritten token by token as an
// expression of github.com/expr-lang/expr, parsed by expr, checked and
// rewritten here (each path becomes a variable, each comparison a call to
// a function with SQL's rules), then type-checked, optimised and compiled
// to bytecode by expr. Evaluating it resolves the paths in the JSON
// envelope (github.com/tidwall/gjson, no decoding of the rest) and runs
// the bytecode on a reused VM.

// MaxWhereLen is IoTDA's bound on a where condition.
const MaxWhereLen = 2500

// envelopeFields are the names a path may start with.
var envelopeFields = map[string]bool{"resource": true, "event": true, "event_time": true,
	"event_time_ms": true, "request_id": true, "notify_data": true}

const fieldHint = "a field starts with resource, event, event_time, event_time_ms, request_id or notify_data"

// Condition is a compiled where condition; the zero Condition (from an
// empty where) matches every event. It is safe for concurrent use.
type Condition struct{ c *compiled }

type compiled struct {
	prog  *vm.Program
	paths []string // gjson paths, resolved into the variables before a run
	names []string // the variable of each path
	runs  sync.Pool
}

// run is what one evaluation needs; reused through compiled.runs.
type run struct {
	vm  vm.VM
	env map[string]any
}

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
	tr, err := translate(src, toks)
	if err != nil {
		return Condition{}, err
	}
	cfg := conf.CreateNew()
	expr.DisableAllBuiltins()(cfg)
	for name := range cfg.Disabled {
		delete(cfg.Builtins, name)
	}
	tree, err := parser.ParseWithConfig(tr.out.String(), cfg)
	if err != nil {
		return Condition{}, tr.syntaxError(err)
	}
	cv := &converter{tr: tr, refs: make(map[string]string)}
	if tree.Node, err = cv.condition(tree.Node); err != nil {
		return Condition{}, err
	}
	c := &compiled{paths: cv.paths, names: cv.names}
	env := make(map[string]any, len(c.names))
	for _, n := range c.names {
		env[n] = nil
	}
	for _, op := range append([]expr.Option{expr.Env(env), expr.AsBool()}, functions...) {
		op(cfg)
	}
	cfg.Check()
	if _, err := checker.Check(tree, cfg); err != nil {
		return Condition{}, tr.syntaxError(err)
	}
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		return Condition{}, tr.syntaxError(err)
	}
	if c.prog, err = compiler.Compile(tree, cfg); err != nil {
		return Condition{}, tr.syntaxError(err)
	}
	c.runs.New = func() any { return &run{env: make(map[string]any, len(c.names))} }
	return Condition{c: c}, nil
}

// Match evaluates the condition against a push envelope (JSON).
func (c Condition) Match(envelope []byte) bool {
	if c.c == nil {
		return true
	}
	r := c.c.runs.Get().(*run)
	defer c.c.runs.Put(r)
	for i, p := range c.c.paths {
		r.env[c.c.names[i]] = lookup(envelope, p)
	}
	// Every function of the program is total, so a run fails only on a
	// bug; the event is then not selected rather than pushed unfiltered.
	out, err := r.vm.Run(c.c.prog, r.env)
	b, _ := out.(bool)
	return err == nil && b
}

// Empty reports whether the condition matches everything.
func (c Condition) Empty() bool { return c.c == nil }

// translation is a clause rewritten as expr source, with the offset in
// the clause of each token written.
type translation struct {
	out    strings.Builder
	at     []int // offsets in out where tokens start
	srcAt  []int // their offsets in the clause
	srcLen int
}

func (t *translation) emit(pos int, s string) {
	t.at = append(t.at, t.out.Len())
	t.srcAt = append(t.srcAt, pos)
	t.out.WriteString(s)
	t.out.WriteByte(' ')
}

// pos maps an offset in the expr source to the clause. The source is
// ASCII (strings are written with QuoteToASCII), so expr's rune offsets
// are byte offsets.
func (t *translation) pos(off int) int {
	if off >= t.out.Len()-1 {
		return t.srcLen
	}
	i := sort.SearchInts(t.at, off+1) - 1
	if i < 0 {
		return 0
	}
	return t.srcAt[i]
}

// exprToken is how expr's messages name a token: Bracket(")").
var exprToken = regexp.MustCompile(`token [A-Za-z]+\("((?:[^"\\]|\\.)*)"\)`)

// syntaxError turns an error of expr into one at the clause's offset.
func (t *translation) syntaxError(err error) error {
	if fe, ok := err.(*file.Error); ok {
		return &SyntaxError{Pos: t.pos(fe.From), Msg: exprToken.ReplaceAllString(strings.ReplaceAll(fe.Message, "token EOF", "end of clause"), "'$1'")}
	}
	return &SyntaxError{Pos: 0, Msg: err.Error()}
}

// Functions of the language, as written in a clause.
const (
	fnStartsWith  = "STARTS_WITH"
	fnEndsWith    = "ENDS_WITH"
	fnContainsTag = "CONTAINS_TAG"
	fnGetTag      = "GET_TAG"
)

const functionHint = "supported: STARTS_WITH, ENDS_WITH, CONTAINS_TAG, GET_TAG"

// translate writes the tokens of a where clause as expr source: keywords
// as expr's, = as ==, IS [NOT] NULL as a comparison with nil, a path's
// names as string indexes (so no name can read as an expr keyword). What
// expr would accept but the language does not is refused here.
func translate(src string, toks []token) (*translation, error) {
	tr := &translation{srcLen: len(src)}
	var open []int // offsets of the '(' not closed yet
	for i := 0; i < len(toks); i++ {
		t, next := toks[i], toks[min(i+1, len(toks)-1)]
		var prev token
		if i > 0 {
			prev = toks[i-1]
		}
		switch t.kind {
		case tEOF:
			if len(open) > 0 {
				p := open[len(open)-1]
				return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected ')' to close the '(' at character %d, found %s", p+1, t)}
			}
		case tName:
			if prev.kind == tDot {
				tr.emit(t.pos, `["`+t.text+`"]`) // names are [A-Za-z0-9_]
				continue
			}
			switch k := keyword(t); k {
			case "AND", "OR", "NOT", "TRUE", "FALSE":
				tr.emit(t.pos, strings.ToLower(k))
			case "IS":
				op := "=="
				if isKeyword(next, "NOT") {
					op, i = "!=", i+1
				}
				if n := toks[i+1]; !isKeyword(n, "NULL") {
					return nil, &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("expected NULL after IS, found %s", n)}
				}
				i++
				tr.emit(t.pos, op+" nil")
			case "NULL":
				return nil, &SyntaxError{Pos: t.pos, Msg: "compare with NULL using IS NULL or IS NOT NULL"}
			default:
				switch {
				case endsOperand(prev):
					return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("unsupported operator %s (supported: = != <> < <= > >= IS [NOT] NULL)", t)}
				case next.kind == tLParen:
					switch t.text {
					case fnStartsWith, fnEndsWith, fnContainsTag, fnGetTag:
					default:
						return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("unknown function %s (%s)", t, functionHint)}
					}
				case !envelopeFields[t.text]:
					return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("unknown field %q: %s", t.text, fieldHint)}
				}
				tr.emit(t.pos, t.text)
			}
		case tDot:
			if next.kind != tName {
				return nil, &SyntaxError{Pos: next.pos, Msg: fmt.Sprintf("expected a field name after '.', found %s", next)}
			}
		case tLBracket:
			idx, err := strconv.Atoi(next.text)
			if next.kind != tNumber || err != nil || idx < 0 {
				return nil, &SyntaxError{Pos: next.pos, Msg: fmt.Sprintf("expected an array index (0, 1, ...) after '[', found %s", next)}
			}
			if c := toks[i+2]; c.kind != tRBracket {
				return nil, &SyntaxError{Pos: c.pos, Msg: fmt.Sprintf("expected ']', found %s", c)}
			}
			tr.emit(t.pos, "["+strconv.Itoa(idx)+"]")
			i += 2
		case tRBracket:
			return nil, &SyntaxError{Pos: t.pos, Msg: "unexpected ']'"}
		case tString:
			tr.emit(t.pos, strconv.QuoteToASCII(t.text))
		case tNumber:
			tr.emit(t.pos, exprNumber(t.text))
		case tOp:
			if t.text == "=" {
				tr.emit(t.pos, "==")
			} else {
				tr.emit(t.pos, t.text)
			}
		case tLParen:
			open = append(open, t.pos)
			tr.emit(t.pos, t.text)
		case tRParen:
			if len(open) == 0 {
				return nil, &SyntaxError{Pos: t.pos, Msg: "unexpected ')': no '(' to close"}
			}
			open = open[:len(open)-1]
			tr.emit(t.pos, t.text)
		case tComma:
			tr.emit(t.pos, t.text)
		case tStar:
			return nil, &SyntaxError{Pos: t.pos, Msg: "'*' is not part of a condition (it selects the whole message in select)"}
		}
	}
	return tr, nil
}

// endsOperand reports whether t can end an operand, so that a name after
// it is an operator.
func endsOperand(t token) bool {
	switch t.kind {
	case tString, tNumber, tRParen, tRBracket:
		return true
	case tName:
		switch keyword(t) {
		case "AND", "OR", "NOT", "IS":
			return false
		}
		return true
	}
	return false
}

// exprNumber writes a number (valid, lex checked it) in expr's syntax.
func exprNumber(s string) string {
	f, _ := strconv.ParseFloat(s, 64)
	if f == float64(int64(f)) && f > -1e15 && f < 1e15 && !strings.ContainsAny(s, ".eE") {
		return strconv.FormatInt(int64(f), 10)
	}
	out := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(out, ".") {
		out += ".0"
	}
	return out
}
