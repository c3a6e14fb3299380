package regions

import (
	"net/netip"
	"testing"
)

func TestRulesPick(t *testing.T) {
	rules := Rules{Default: "eu", List: []Rule{
		{Source: netip.MustParsePrefix("10.1.0.0/16"), ProductKey: "pkA", Region: "cn"},
		{Source: netip.MustParsePrefix("10.0.0.0/8"), Region: "us"},
		{ProductKey: "pkB", Region: "sg"},
		{Source: netip.MustParsePrefix("2001:db8::/32"), Region: "jp"},
	}}
	tests := []struct {
		addr, pk, want string
	}{
		{"10.1.2.3", "pkA", "cn"},        // both conditions of the first rule
		{"10.1.2.3", "pkB", "us"},        // source range, first match wins over the product rule
		{"10.200.0.1", "pkA", "us"},      // pkA outside 10.1/16
		{"192.0.2.1", "pkB", "sg"},       // product rule
		{"192.0.2.1", "pkC", "eu"},       // default
		{"::ffff:10.9.9.9", "pkC", "us"}, // IPv4-mapped matched as IPv4
		{"2001:db8::1", "pkC", "jp"},     // IPv6 range
		{"2001:db9::1", "pkC", "eu"},     // outside it
	}
	for _, tt := range tests {
		if got := rules.Pick(netip.MustParseAddr(tt.addr), tt.pk); got != tt.want {
			t.Errorf("Pick(%s, %s) = %q, want %q", tt.addr, tt.pk, got, tt.want)
		}
	}
}

func TestRulesCheck(t *testing.T) {
	known := func(id string) bool { return id == "a" || id == "b" }
	tests := []struct {
		name  string
		rules Rules
		ok    bool
	}{
		{"fine", Rules{Default: "a", List: []Rule{{ProductKey: "p", Region: "b"}}}, true},
		{"unknown default", Rules{Default: "c"}, false},
		{"no default", Rules{}, false},
		{"unknown rule region", Rules{Default: "a", List: []Rule{{ProductKey: "p", Region: "c"}}}, false},
		{"match-all rule", Rules{Default: "a", List: []Rule{{Region: "b"}}}, false},
	}
	for _, tt := range tests {
		if err := tt.rules.Check(known); (err == nil) != tt.ok {
			t.Errorf("%s: Check = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
