package regions

import (
	"fmt"
	"net/netip"
)

// Rule assigns the devices it matches to Region. A rule with both a
// source range and a ProductKey matches only devices meeting both.
type Rule struct {
	// Source is the range the device's first contact comes from; the
	// zero Prefix matches every address.
	Source netip.Prefix
	// ProductKey is the device's product; empty matches every product.
	ProductKey string
	Region     string
}

// Rules is the assignment policy: the first rule that matches, in
// order, else Default.
type Rules struct {
	List    []Rule
	Default string
}

// Pick returns the region for a first contact from addr by a device of
// product pk. addr may be an IPv4-mapped IPv6 address (as a dual-stack
// listener reports IPv4 peers); it is matched as IPv4.
func (r Rules) Pick(addr netip.Addr, pk string) string {
	addr = addr.Unmap()
	for _, rule := range r.List {
		if rule.Source.IsValid() && !rule.Source.Contains(addr) {
			continue
		}
		if rule.ProductKey != "" && rule.ProductKey != pk {
			continue
		}
		return rule.Region
	}
	return r.Default
}

// Check reports a rule or default naming a region not in known, or a
// rule matching everything ahead of others (which would never apply).
func (r Rules) Check(known func(string) bool) error {
	if !known(r.Default) {
		return fmt.Errorf("default region %q is not a configured region", r.Default)
	}
	for i, rule := range r.List {
		if !known(rule.Region) {
			return fmt.Errorf("rule %d: region %q is not a configured region", i, rule.Region)
		}
		if !rule.Source.IsValid() && rule.ProductKey == "" {
			return fmt.Errorf("rule %d: needs a source range or a product key", i)
		}
	}
	return nil
}
