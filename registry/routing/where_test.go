package routing

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const envelopeJSON = `{"resource":"device.property","event":"report","request_id":"r1",
 "notify_data":{"header":{"device_id":"d1","product_id":"p1","tags":[]},
  "body":{"services":[{"service_id":"Temp","properties":{"temp":31.5,"name":"it's","on":true}}]}}}`

func TestWhereMatch(t *testing.T) {
	var env map[string]any
	if err := json.Unmarshal([]byte(envelopeJSON), &env); err != nil {
		t.Fatal(err)
	}
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
		{"notify_data.body.temp", 22, "expected a comparison operator"},
		{"temp > 3", 1, `unknown field "temp"`},
		{"notify_data.body.temp == 3", 23, "'==' is not an operator"},
		{"notify_data.body.temp ! 3", 23, "'!' must be followed by '='"},
		{"notify_data.body.name = \"x\"", 25, `strings are quoted with '`},
		{"notify_data.body.name = 'x", 25, "string is not closed"},
		{"notify_data.body.name LIKE 'x%'", 23, "unsupported operator 'LIKE'"},
		{"notify_data.body.name = 'x' AND", 32, "expected a field or a value, found end of condition"},
		{"(resource = 'x'", 16, "expected ')' to close the '(' at character 1"},
		{"resource = 'x')", 15, "unexpected ')' after a complete condition"},
		{"notify_data.body.a[x] = 1", 20, "expected an array index"},
		{"notify_data.body.a[1 = 1", 22, "expected ']'"},
		{"notify_data.body. = 1", 19, "expected a field name after '.'"},
		{"notify_data.body.a = NULL", 22, "IS NULL"},
		{"1 = 1", 3, "must name a field"},
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
