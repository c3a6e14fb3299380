package format

import (
	"fmt"
	"sort"
	"strings"
)

// CoRE Link Format (RFC 6690 §2), used by Register/Update payloads and
// Discover answers:  </>;rt="oma.lwm2m",</1/0>,</3/0>;ver=1.1

// Link is one link-value: a target URI and its parameters. A parameter
// without a value (e.g. "obs") maps to "".
type Link struct {
	Target string
	Params map[string]string
}

const linkName = "link-format"

type linkParser struct {
	s   string
	off int
}

func (p *linkParser) errorf(off int, format string, args ...any) error {
	return fmt.Errorf("%s: %s at offset %d: %w", linkName, fmt.Sprintf(format, args...), off, ErrMalformed)
}

// skipSpace tolerates the whitespace and line breaks clients put between
// links and around delimiters, though RFC 6690 allows none.
func (p *linkParser) skipSpace() {
	for p.off < len(p.s) {
		switch p.s[p.off] {
		case ' ', '\t', '\r', '\n':
			p.off++
		default:
			return
		}
	}
}

func (p *linkParser) peek() byte {
	if p.off < len(p.s) {
		return p.s[p.off]
	}
	return 0
}

// isParmnameChar follows RFC 5987 parmname (attr-char without '%'), plus
// '*' for extended parameters such as title*.
func isParmnameChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~*", c) >= 0
}

// isPtokenChar follows RFC 6690 ptokenchar.
func isPtokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'()*+-./:<=>?@[]^_`{|}~", c) >= 0
}

// ParseLinks parses a CoRE Link Format payload. An empty payload has no
// links. Duplicate parameters keep their first value, as RFC 8288 §3 asks
// for rel and as is safe for the rest.
func ParseLinks(payload []byte) ([]Link, error) {
	p := &linkParser{s: string(payload)}
	var links []Link
	p.skipSpace()
	if p.off == len(p.s) {
		return nil, nil
	}
	for {
		l, err := p.link()
		if err != nil {
			return nil, err
		}
		links = append(links, l)
		p.skipSpace()
		if p.off == len(p.s) {
			return links, nil
		}
		if p.peek() != ',' {
			return nil, p.errorf(p.off, "want ',' or ';' after link %q, got %q", clip(l.Target), p.peek())
		}
		p.off++
		p.skipSpace()
		if p.off == len(p.s) {
			return nil, p.errorf(p.off, "empty link after ','")
		}
	}
}

func (p *linkParser) link() (Link, error) {
	var l Link
	start := p.off
	if p.peek() != '<' {
		return l, p.errorf(p.off, "link must start with '<', got %q", p.peek())
	}
	end := strings.IndexByte(p.s[p.off+1:], '>')
	if end < 0 {
		return l, p.errorf(start, "unterminated '<'")
	}
	target := p.s[p.off+1 : p.off+1+end]
	if target == "" {
		return l, p.errorf(start, "empty link target")
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == '<' || c == '"' || c == 0x7f {
			return l, p.errorf(start+1+i, "invalid character %q in link target", c)
		}
	}
	l.Target = target
	p.off += end + 2
	for {
		p.skipSpace()
		if p.peek() != ';' {
			return l, nil
		}
		p.off++
		p.skipSpace()
		nameStart := p.off
		for p.off < len(p.s) && isParmnameChar(p.s[p.off]) {
			p.off++
		}
		name := p.s[nameStart:p.off]
		if name == "" {
			return l, p.errorf(nameStart, "empty parameter name in link %q", clip(target))
		}
		value := ""
		p.skipSpace()
		if p.peek() == '=' {
			p.off++
			p.skipSpace()
			var err error
			if value, err = p.paramValue(); err != nil {
				return l, err
			}
		}
		if l.Params == nil {
			l.Params = map[string]string{}
		}
		if _, dup := l.Params[name]; !dup {
			l.Params[name] = value
		}
	}
}

func (p *linkParser) paramValue() (string, error) {
	if p.peek() == '"' {
		start := p.off
		p.off++
		var b strings.Builder
		for p.off < len(p.s) {
			c := p.s[p.off]
			switch c {
			case '"':
				p.off++
				return b.String(), nil
			case '\\': // quoted-pair
				if p.off+1 >= len(p.s) {
					return "", p.errorf(start, "unterminated quoted string")
				}
				b.WriteByte(p.s[p.off+1])
				p.off += 2
			default:
				b.WriteByte(c)
				p.off++
			}
		}
		return "", p.errorf(start, "unterminated quoted string")
	}
	start := p.off
	for p.off < len(p.s) && isPtokenChar(p.s[p.off]) {
		p.off++
	}
	// A value ends at ',', ';', whitespace or the end; anything else (a
	// stray quote, a control byte) is an error rather than a silent cut.
	if c := p.peek(); p.off < len(p.s) && c != ',' && c != ';' && c != ' ' && c != '\t' && c != '\r' && c != '\n' {
		return "", p.errorf(p.off, "invalid character %q in parameter value", c)
	}
	return p.s[start:p.off], nil
}

// FormatLinks renders links in CoRE Link Format, comma-separated with
// parameters sorted by name for stable output. Values made of digits, '.'
// and '-' (ct=11543, ver=1.1) stay bare; all others are quoted
// (rt="oma.lwm2m"); empty values are written as a bare name. Targets and
// parameter names are written as given, so links built by hand must hold
// what ParseLinks accepts (no '>' or spaces in a target).
func FormatLinks(links []Link) []byte {
	var b []byte
	for i, l := range links {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '<')
		b = append(b, l.Target...)
		b = append(b, '>')
		names := make([]string, 0, len(l.Params))
		for k := range l.Params {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v := l.Params[k]
			b = append(b, ';')
			b = append(b, k...)
			if v == "" {
				continue
			}
			b = append(b, '=')
			if isBareValue(v) {
				b = append(b, v...)
				continue
			}
			b = append(b, '"')
			for j := 0; j < len(v); j++ {
				if v[j] == '"' || v[j] == '\\' {
					b = append(b, '\\')
				}
				b = append(b, v[j])
			}
			b = append(b, '"')
		}
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

func isBareValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9') && c != '.' && c != '-' {
			return false
		}
	}
	return v != ""
}
