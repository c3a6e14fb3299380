package routing

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// converter checks the tree expr parsed from a translated where clause
// and rewrites it for evaluation: each distinct path becomes a variable
// (resolved from the envelope before a run) and each comparison, IS NULL
// and function a call to one of functions.
type converter struct {
	tr    *translation
	paths []string          // gjson paths, by variable
	names []string          // variables ("p0", ...)
	refs  map[string]string // gjson path -> variable
}

// errAt is an error at the start of n's text.
func (c *converter) errAt(n ast.Node, format string, args ...any) error {
	for {
		switch v := n.(type) {
		case *ast.MemberNode:
			n = v.Node
			continue
		case *ast.BinaryNode:
			n = v.Left
			continue
		}
		break
	}
	return &SyntaxError{Pos: c.tr.pos(n.Location().From), Msg: fmt.Sprintf(format, args...)}
}

// comparisons maps expr's comparison operators to their SQL functions.
var comparisons = map[string]string{"==": fnEq, "!=": fnNe, "<": fnLt, "<=": fnLe, ">": fnGt, ">=": fnGe}

// condition rewrites a node that must be a condition.
func (c *converter) condition(n ast.Node) (ast.Node, error) {
	switch n := n.(type) {
	case *ast.BinaryNode:
		switch n.Operator {
		case "and", "or":
			var err error
			if n.Left, err = c.condition(n.Left); err != nil {
				return nil, err
			}
			if n.Right, err = c.condition(n.Right); err != nil {
				return nil, err
			}
			return n, nil
		}
		if fn, ok := comparisons[n.Operator]; ok {
			return c.comparison(n, fn)
		}
		return nil, c.errAt(n, "unsupported operator %q", n.Operator)
	case *ast.UnaryNode:
		if n.Operator == "not" {
			var err error
			if n.Node, err = c.condition(n.Node); err != nil {
				return nil, err
			}
			return n, nil
		}
	case *ast.CallNode:
		switch callee(n) {
		case fnStartsWith, fnEndsWith:
			if err := c.arity(n, 2); err != nil {
				return nil, err
			}
			args := make([]ast.Node, 2)
			for i, a := range n.Arguments {
				var err error
				if args[i], err = c.operand(a); err != nil {
					return nil, err
				}
			}
			fn := fnPrefix
			if callee(n) == fnEndsWith {
				fn = fnSuffix
			}
			return call(n, fn, args...), nil
		case fnContainsTag:
			tag, err := c.tag(n)
			if err != nil {
				return nil, err
			}
			return call(n, fnNotNull, tag), nil
		}
	}
	return nil, c.errAt(n, "expected a condition (a comparison, IS [NOT] NULL, STARTS_WITH, ENDS_WITH or CONTAINS_TAG), found %s", c.describe(n))
}

func (c *converter) comparison(n *ast.BinaryNode, fn string) (ast.Node, error) {
	if not, ok := n.Left.(*ast.UnaryNode); ok && not.Operator == "not" {
		// expr's not binds tighter than a comparison, SQL's looser: NOT a
		// = 1 is NOT (a = 1).
		n.Left = not.Node
		cond, err := c.comparison(n, fn)
		if err != nil {
			return nil, err
		}
		not.Node = cond
		return not, nil
	}
	l, err := c.operand(n.Left)
	if err != nil {
		return nil, err
	}
	if _, ok := n.Right.(*ast.NilNode); ok { // IS [NOT] NULL (translate)
		if fn == fnEq {
			return call(n, fnNull, l), nil
		}
		return call(n, fnNotNull, l), nil
	}
	r, err := c.operand(n.Right)
	if err != nil {
		return nil, err
	}
	if isLiteral(l) && isLiteral(r) {
		return nil, c.errAt(n, "a comparison must name a field of the message on one side")
	}
	return call(n, fn, l, r), nil
}

// operand rewrites a node that must be a value: a literal, a path or
// GET_TAG.
func (c *converter) operand(n ast.Node) (ast.Node, error) {
	switch v := n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return n, nil
	case *ast.UnaryNode:
		if v.Operator == "-" {
			switch x := v.Node.(type) {
			case *ast.IntegerNode:
				x.Value = -x.Value
				return x, nil
			case *ast.FloatNode:
				x.Value = -x.Value
				return x, nil
			}
		}
	case *ast.IdentifierNode, *ast.MemberNode:
		p, err := c.path(n)
		if err != nil {
			return nil, err
		}
		return c.ref(n, p), nil
	case *ast.CallNode:
		if callee(v) == fnGetTag {
			return c.tag(v)
		}
	}
	return nil, c.errAt(n, "expected a field or a value, found %s", c.describe(n))
}

// path returns the gjson path of a member chain rooted at an envelope
// field.
func (c *converter) path(n ast.Node) (string, error) {
	var steps []string
	for {
		switch m := n.(type) {
		case *ast.MemberNode:
			switch p := m.Property.(type) {
			case *ast.StringNode:
				steps = append(steps, p.Value)
			case *ast.IntegerNode:
				steps = append(steps, strconv.Itoa(p.Value))
			default:
				return "", c.errAt(m, "expected a field name or an array index")
			}
			n = m.Node
		case *ast.IdentifierNode:
			if !envelopeFields[m.Value] {
				return "", c.errAt(m, "unknown field %q: %s", m.Value, fieldHint)
			}
			steps = append(steps, m.Value)
			for i, j := 0, len(steps)-1; i < j; i, j = i+1, j-1 {
				steps[i], steps[j] = steps[j], steps[i]
			}
			return strings.Join(steps, "."), nil
		default:
			return "", c.errAt(n, "expected a field, found %s", c.describe(n))
		}
	}
}

// tag returns the variable of GET_TAG's or CONTAINS_TAG's device tag.
func (c *converter) tag(n *ast.CallNode) (ast.Node, error) {
	if err := c.arity(n, 1); err != nil {
		return nil, err
	}
	key, ok := n.Arguments[0].(*ast.StringNode)
	if !ok {
		return nil, c.errAt(n.Arguments[0], "%s takes a tag key as a string", callee(n))
	}
	if !validTagKey(key.Value) {
		return nil, c.errAt(key, "a tag key holds 1 to 64 letters, digits, '_', '-' or '.'")
	}
	return c.ref(n, tagPath(key.Value)), nil
}

func (c *converter) arity(n *ast.CallNode, want int) error {
	if len(n.Arguments) != want {
		return c.errAt(n, "%s takes %d argument(s), found %d", callee(n), want, len(n.Arguments))
	}
	return nil
}

// ref returns the variable that holds path's value, one per distinct path.
func (c *converter) ref(at ast.Node, path string) ast.Node {
	name, ok := c.refs[path]
	if !ok {
		name = "p" + strconv.Itoa(len(c.names))
		c.refs[path] = name
		c.paths, c.names = append(c.paths, path), append(c.names, name)
	}
	id := &ast.IdentifierNode{Value: name}
	id.SetLocation(at.Location())
	return id
}

func (c *converter) describe(n ast.Node) string {
	switch n.(type) {
	case *ast.IdentifierNode, *ast.MemberNode:
		return "a field"
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return "the value " + n.String()
	case *ast.CallNode:
		return "a function call"
	}
	return "an expression"
}

func callee(n *ast.CallNode) string {
	if id, ok := n.Callee.(*ast.IdentifierNode); ok {
		return id.Value
	}
	return ""
}

func call(at ast.Node, fn string, args ...ast.Node) ast.Node {
	n := &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: args}
	n.SetLocation(at.Location())
	return n
}

func isLiteral(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return true
	}
	return false
}
