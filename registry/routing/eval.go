package routing

import (
	"strings"

	"github.com/expr-lang/expr"
	"github.com/tidwall/gjson"
)

// The functions a compiled condition calls (convert.go writes the calls):
// comparisons with SQL's rules, NULL tests and string tests. They never
// fail, so a run never does.
const (
	fnEq      = "sql_eq"
	fnNe      = "sql_ne"
	fnLt      = "sql_lt"
	fnLe      = "sql_le"
	fnGt      = "sql_gt"
	fnGe      = "sql_ge"
	fnNull    = "sql_null"
	fnNotNull = "sql_not_null"
	fnPrefix  = "sql_starts_with"
	fnSuffix  = "sql_ends_with"
)

var (
	binaryBool = new(func(any, any) bool)
	unaryBool  = new(func(any) bool)
	functions  = []expr.Option{
		expr.Function(fnEq, compareWith(func(c int) bool { return c == 0 }, equality), binaryBool),
		expr.Function(fnNe, compareWith(func(c int) bool { return c != 0 }, equality|differTrue), binaryBool),
		expr.Function(fnLt, compareWith(func(c int) bool { return c < 0 }, 0), binaryBool),
		expr.Function(fnLe, compareWith(func(c int) bool { return c <= 0 }, 0), binaryBool),
		expr.Function(fnGt, compareWith(func(c int) bool { return c > 0 }, 0), binaryBool),
		expr.Function(fnGe, compareWith(func(c int) bool { return c >= 0 }, 0), binaryBool),
		expr.Function(fnNull, func(a ...any) (any, error) { return a[0] == nil, nil }, unaryBool),
		expr.Function(fnNotNull, func(a ...any) (any, error) { return a[0] != nil, nil }, unaryBool),
		expr.Function(fnPrefix, stringTest(strings.HasPrefix), binaryBool),
		expr.Function(fnSuffix, stringTest(strings.HasSuffix), binaryBool),
	}
)

// composite stands for an object or an array in the envelope: present,
// but equal, unequal or ordered to nothing.
type composite struct{}

// order is how two values compare: ordered (c valid), of different types
// (differ), or not comparable at all (a NULL, an object, booleans under
// an order).
type order uint8

const (
	ordered order = iota
	differ
	incomparable
)

func compare(a, b any) (c int, o order) {
	a, b = number(a), number(b)
	if a == nil || b == nil {
		return 0, incomparable
	}
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			break
		}
		switch {
		case x < y:
			return -1, ordered
		case x > y:
			return 1, ordered
		}
		return 0, ordered
	case string:
		y, ok := b.(string)
		if !ok {
			break
		}
		return strings.Compare(x, y), ordered
	case bool:
		y, ok := b.(bool)
		if !ok {
			break
		}
		if x == y {
			return 0, ordered
		}
		return 1, ordered // booleans are only equal or not: see compareWith
	case composite:
		return 0, incomparable
	}
	if _, ok := b.(composite); ok {
		return 0, incomparable
	}
	return 0, differ
}

// Kinds of comparison.
const (
	equality   = 1 << iota // = or !=: booleans compare too
	differTrue             // values of different types give true (!=)
)

// compareWith makes a comparison function: test says what an ordered
// result means, kind what booleans and values of different types give.
func compareWith(test func(int) bool, kind int) func(...any) (any, error) {
	return func(a ...any) (any, error) {
		c, o := compare(a[0], a[1])
		switch o {
		case differ:
			return kind&differTrue != 0, nil
		case incomparable:
			return false, nil
		}
		if _, isBool := a[0].(bool); isBool && kind&equality == 0 {
			return false, nil
		}
		return test(c), nil
	}
}

func stringTest(f func(s, affix string) bool) func(...any) (any, error) {
	return func(a ...any) (any, error) {
		s, ok1 := a[0].(string)
		affix, ok2 := a[1].(string)
		return ok1 && ok2 && f(s, affix), nil
	}
}

// number makes expr's integer literals float64, as JSON numbers are.
func number(v any) any {
	if i, ok := v.(int); ok {
		return float64(i)
	}
	return v
}

// lookup returns the value at a gjson path of the envelope: nil when
// missing or null, a string, a float64, a bool, or composite.
func lookup(envelope []byte, path string) any {
	r := gjson.GetBytes(envelope, path)
	switch r.Type {
	case gjson.String:
		return r.Str
	case gjson.Number:
		return r.Num
	case gjson.True:
		return true
	case gjson.False:
		return false
	case gjson.JSON:
		return composite{}
	}
	return nil
}

// tagPath is the gjson path of a device tag's value.
func tagPath(key string) string {
	return `notify_data.header.tags.#(tag_key=="` + key + `").tag_value`
}

func validTagKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isNamePart(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}
