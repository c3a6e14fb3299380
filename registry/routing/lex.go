package routing

import (
	"fmt"
	"strconv"
	"strings"
)

// The lexer of IoTDA's rule clauses (select and where): it finds the
// tokens and their byte offsets, and refuses what is not part of the
// language with the offset of the offending character.

// SyntaxError says where and why a clause is refused.
type SyntaxError struct {
	Pos int // byte offset in the clause
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("at character %d: %s", e.Pos+1, e.Msg) }

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
	tComma
	tStar
)

type token struct {
	kind tokKind
	text string // a string's value (unquoted); an operator's canonical form
	pos  int
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of clause"
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
		case punctuation(c) != tEOF:
			toks, i = append(toks, token{kind: punctuation(c), text: src[i : i+1], pos: i}), i+1
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
			if _, err := strconv.ParseFloat(src[i:j], 64); err != nil {
				return nil, &SyntaxError{Pos: i, Msg: fmt.Sprintf("%q is not a number", src[i:j])}
			}
			toks, i = append(toks, token{kind: tNumber, text: src[i:j], pos: i}), j
		case isNameStart(c):
			j := i + 1
			for j < len(src) && isNamePart(src[j]) {
				j++
			}
			toks, i = append(toks, token{kind: tName, text: src[i:j], pos: i}), j
		default:
			return nil, &SyntaxError{Pos: i, Msg: fmt.Sprintf("unexpected character %q", c)}
		}
	}
	return append(toks, token{kind: tEOF, pos: len(src)}), nil
}

// punctuation is the kind of a one-character token, tEOF for others.
func punctuation(c byte) tokKind {
	switch c {
	case '(':
		return tLParen
	case ')':
		return tRParen
	case '[':
		return tLBracket
	case ']':
		return tRBracket
	case ',':
		return tComma
	case '*':
		return tStar
	}
	return tEOF
}

func isDigit(c byte) bool              { return c >= '0' && c <= '9' }
func isNameStart(c byte) bool          { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isNamePart(c byte) bool           { return isNameStart(c) || isDigit(c) }
func keyword(t token) string           { return strings.ToUpper(t.text) }
func isKeyword(t token, k string) bool { return t.kind == tName && keyword(t) == k }
