package routing

import (
	"errors"
	"strings"
	"testing"
)

const envelopeJSON = `{"resource":"device.property","event":"report","request_id":"r1",
 "notify_data":{"header":{"device_id":"d1","product_id":"p1","tags":[{"tag_key":"site","tag_value":"north-1"}]},
  "body":{"services":[{"service_id":"Temp","properties":{"temp":31.5,"name":"it's","on":true}}]}}}`

func TestWhereMatch(t *testing.T) {
	env := []byte(envelopeJSON)
	cases := []struct {
		where string
		want  bool
	}{
		{"", true},
		{"notify_data.body.services[0].properties.temp > 30", true},
		{"notify_data.body.services[0].properties.temp > 31.5", false},
		{"notify_data.body.services[0].properties.temp >= 31.5", true},
		{"notify_data.body.services[0].properties.temp <= -1", false},
		{"notify_data.header.device_id = 'd1'", true},
		{"notify_data.header.device_id <> 'd1'", false},
		{"notify_data.header.device_id != 'd2'", true},
		{"'d1' = notify_data.header.device_id", true},
		{"notify_data.body.services[0].properties.name = 'it''s'", true},
		{"notify_data.body.services[0].properties.on = TRUE", true},
		{"notify_data.body.services[0].properties.on = false", false},
		{"resource = 'device.property' AND event = 'report'", true},
		{"resource = 'device.message' OR event = 'report'", true},
		{"resource = 'device.message' or event = 'update'", false},
		{"NOT resource = 'device.message'", true},
		{"not (resource = 'device.property' and event = 'report')", false},
		{"resource = 'x' AND event = 'report' OR request_id = 'r1'", true},    // AND binds tighter
		{"resource = 'x' AND (event = 'report' OR request_id = 'r1')", false}, // parentheses
		// Missing paths are NULL: every comparison with them is false.
		{"notify_data.body.missing > 1", false},
		{"notify_data.body.missing != 1", false},
		{"notify_data.body.services[5].service_id = 'Temp'", false},
		{"notify_data.body.services.service_id = 'Temp'", false},
		{"notify_data.body.missing IS NULL", true},
		{"notify_data.body.services[0] IS NOT NULL", true},
		{"notify_data.body.services[0].service_id is null", false},
		// Different types are never equal.
		{"notify_data.header.device_id = 1", false},
		{"notify_data.header.device_id != 1", true},
		{"notify_data.body.services[0].properties.temp = '31.5'", false},
		{"notify_data.header.device_id > 'a'", true},
		{"notify_data.body.services[0].properties.on > false", false},
		{"notify_data.body = 'x'", false},
		{"notify_data.body != 'x'", false},
		// NOT binds looser than a comparison, tighter than AND.
		{"NOT notify_data.body.services[0].properties.temp > 40", true},
		{"NOT notify_data.body.services[0].properties.temp > 30 OR event = 'report'", true},
		{"NOT NOT resource = 'device.property'", true},
		{"NOT notify_data.body.missing IS NULL", false},
		{"notify_data.body.services[0].properties.temp > -40.5", true},
		{"notify_data.body.services[0].properties.temp < 1e2", true},
		// A type mismatch under OR leaves the other side deciding.
		{"notify_data.header.device_id > 3 OR event = 'report'", true},
		{"STARTS_WITH(notify_data.header.device_id, 'd')", true},
		{"ENDS_WITH(resource, '.property') AND NOT STARTS_WITH(resource, 'x')", true},
		{"STARTS_WITH(notify_data.body.missing, '')", false},
		{"GET_TAG('site') = 'north-1'", true},
		{"STARTS_WITH(GET_TAG('site'), 'north')", true},
		{"GET_TAG('floor') IS NULL", true},
		{"CONTAINS_TAG('site')", true},
		{"CONTAINS_TAG('floor')", false},
	}
	for _, c := range cases {
		cond, err := Parse(c.where)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.where, err)
			continue
		}
		if got := cond.Match(env); got != c.want {
			t.Errorf("%q matched %v, want %v", c.where, got, c.want)
		}
	}
}

func TestWhereRefused(t *testing.T) {
	cases := []struct {
		where   string
		pos     int
		message string
	}{
		{"notify_data.body.temp", 1, "expected a condition (a comparison, IS [NOT] NULL, STARTS_WITH, ENDS_WITH or CONTAINS_TAG), found a field"},
		{"temp > 3", 1, `unknown field "temp"`},
		{"notify_data.body.temp == 3", 23, "'==' is not an operator"},
		{"notify_data.body.temp ! 3", 23, "'!' must be followed by '='"},
		{"notify_data.body.name = \"x\"", 25, `strings are quoted with '`},
		{"notify_data.body.name = 'x", 25, "string is not closed"},
		{"notify_data.body.name LIKE 'x%'", 23, "unsupported operator 'LIKE'"},
		{"notify_data.body.name = 'x' AND", 32, "unexpected end of clause"},
		{"(resource = 'x'", 16, "expected ')' to close the '(' at character 1"},
		{"resource = 'x')", 15, "unexpected ')': no '(' to close"},
		{"(resource = 'x') resource = 'y'", 18, "unsupported operator 'resource'"},
		{"resource = 'x' 'y'", 16, "unexpected 'y'"},
		{"notify_data.body.a[x] = 1", 20, "expected an array index"},
		{"notify_data.body.a[1 = 1", 22, "expected ']'"},
		{"notify_data.body. = 1", 19, "expected a field name after '.'"},
		{"notify_data.body.a = NULL", 22, "IS NULL"},
		{"1 = 1", 1, "must name a field"},
		{"resource = 'x' AND event", 20, "expected a condition"},
		{"resource = event = 'x'", 1, "expected a field or a value"},
		{"FOO(resource)", 1, "unknown function 'FOO'"},
		{"starts_with(resource, 'd')", 1, "unknown function 'starts_with'"},
		{"STARTS_WITH(resource, 'd') = TRUE", 1, "expected a field or a value, found a function call"},
		{"STARTS_WITH(resource)", 1, "STARTS_WITH takes 2 argument(s), found 1"},
		{"GET_TAG(resource) = 'x'", 9, "GET_TAG takes a tag key as a string"},
		{"CONTAINS_TAG('a b')", 14, "a tag key holds"},
		{"resource = 'x' * 2", 16, "'*' is not part of a condition"},
		{"notify_data.body.a = 1]", 23, "unexpected ']'"},
		{"notify_data.body.a = 1.2.3", 22, `"1.2.3" is not a number`},
		{"notify_data.body.a = 1 ; DROP", 24, "unexpected character ';'"},
		{"notify_data.body.a IS 3", 23, "expected NULL after IS"},
		{strings.Repeat("x", MaxWhereLen+1), MaxWhereLen + 1, "longer than 2500"},
	}
	for _, c := range cases {
		_, err := Parse(c.where)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a SyntaxError", c.where, err)
			continue
		}
		if se.Pos+1 != c.pos || !strings.Contains(se.Error(), c.message) {
			t.Errorf("Parse(%q): %q at %d, want %q at %d", c.where, se.Error(), se.Pos+1, c.message, c.pos)
		}
	}
}

// BenchmarkWhere is the cost of selecting one push: the envelope as the
// worker encodes it, a condition with two comparisons.
func BenchmarkWhere(b *testing.B) {
	doc := []byte(envelopeJSON)
	c, err := Parse("notify_data.body.services[0].properties.temp > 30 AND notify_data.header.device_id = 'd1'")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !c.Match(doc) {
			b.Fatal("no match")
		}
	}
}

func TestWhereConcurrent(t *testing.T) {
	c, err := Parse("notify_data.header.device_id = 'd1' AND notify_data.body.services[0].properties.temp > 30")
	if err != nil {
		t.Fatal(err)
	}
	yes, no := []byte(envelopeJSON), []byte(strings.Replace(envelopeJSON, `"d1"`, `"d2"`, 1))
	done := make(chan bool)
	for g := range 4 {
		go func() {
			ok := true
			for i := range 200 {
				doc, want := yes, true
				if (i+g)%2 == 1 {
					doc, want = no, false
				}
				ok = ok && c.Match(doc) == want
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("a concurrent Match gave a wrong answer")
		}
	}
}
