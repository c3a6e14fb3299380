package lwm2m

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLwM2MParseRegQuery(t *testing.T) {
	for _, tc := range []struct {
		name     string
		q        []string
		register bool
		want     regParams
		err      string // substring; "" = success
	}{
		{"minimal", []string{"ep=n1"}, true, regParams{Endpoint: "n1"}, ""},
		{"full 1.0", []string{"ep=n1", "lt=300", "lwm2m=1.0", "b=UQ", "sms=+861"}, true,
			regParams{Endpoint: "n1", Lifetime: 300 * time.Second, Version: "1.0", Binding: "UQ", SMS: "+861", SMSSet: true}, ""},
		{"1.1 queue param", []string{"ep=n1", "b=U", "Q"}, true, regParams{Endpoint: "n1", Binding: "U", Queue: true}, ""},
		{"unknown params ignored", []string{"ep=n1", "et=meter", "d=dom", "x"}, true, regParams{Endpoint: "n1"}, ""},
		{"urn imei", []string{"ep=urn:imei:861234567890123"}, true, regParams{Endpoint: "urn:imei:861234567890123"}, ""},
		{"missing ep", []string{"lt=60"}, true, regParams{}, "ep (endpoint name) is required"},
		{"empty ep", []string{"ep="}, true, regParams{}, "ep is empty"},
		{"ep with space", []string{"ep=a b"}, true, regParams{}, "printable ASCII"},
		{"ep too long", []string{"ep=" + strings.Repeat("a", 129)}, true, regParams{}, "longer than"},
		{"ep twice", []string{"ep=a", "ep=b"}, true, regParams{}, "given twice"},
		{"lt zero", []string{"ep=a", "lt=0"}, true, regParams{}, "positive"},
		{"lt negative", []string{"ep=a", "lt=-5"}, true, regParams{}, "positive"},
		{"lt not a number", []string{"ep=a", "lt=1h"}, true, regParams{}, "positive"},
		{"lt overflow", []string{"ep=a", "lt=99999999999"}, true, regParams{}, "positive"},
		{"binding unknown letter", []string{"ep=a", "b=X"}, true, regParams{}, "unknown binding"},
		{"binding repeated", []string{"ep=a", "b=UU"}, true, regParams{}, "given twice"},
		{"binding without U", []string{"ep=a", "b=S"}, true, regParams{}, "must include U"},
		{"Q with value", []string{"ep=a", "Q=1"}, true, regParams{}, "no value"},
		{"update", []string{"lt=60", "b=UQ"}, false, regParams{Lifetime: time.Minute, Binding: "UQ"}, ""},
		{"update empty", nil, false, regParams{}, ""},
		{"update with ep", []string{"ep=a"}, false, regParams{}, "not allowed in an Update"},
		{"update with version", []string{"lwm2m=1.1"}, false, regParams{}, "not allowed in an Update"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRegQuery(tc.q, tc.register)
			if tc.err != "" {
				var qe *queryError
				if err == nil || !errors.As(err, &qe) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLwM2MQueueMode(t *testing.T) {
	for _, tc := range []struct {
		p    regParams
		want bool
	}{{regParams{Binding: "U"}, false}, {regParams{Binding: "UQ"}, true}, {regParams{Binding: "U", Queue: true}, true}, {regParams{}, false}} {
		if got := tc.p.queueMode(); got != tc.want {
			t.Errorf("%+v: %v", tc.p, got)
		}
	}
}

func TestLwM2MSupportedVersion(t *testing.T) {
	for v, want := range map[string]bool{"": true, "1.0": true, "1.1": true, "1.0.2": true, "1.2": true,
		"2.0": false, "1": false, "1.": false, "1.x": false, "v1.1": false, "1..1": false} {
		if got := supportedVersion(v); got != want {
			t.Errorf("supportedVersion(%q) = %v", v, got)
		}
	}
}

// FuzzParseRegQuery: any query list is accepted or refused with a
// queryError, never a panic, and what is accepted obeys the rules.
func FuzzLwM2MParseRegQuery(f *testing.F) {
	for _, s := range []string{"ep=n1&lt=60&b=UQ", "ep=urn:imei:1&Q", "ep=&lt=0", "b=UQS&sms=1", "lt=4294967296", "ep=a&ep=b"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, raw string, register bool) {
		p, err := parseRegQuery(strings.Split(raw, "&"), register)
		if err != nil {
			var qe *queryError
			if !errors.As(err, &qe) {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if register && checkEndpoint(p.Endpoint) != nil {
			t.Fatalf("accepted endpoint %q", p.Endpoint)
		}
		if p.Lifetime < 0 {
			t.Fatalf("negative lifetime %v", p.Lifetime)
		}
		if p.Binding != "" && checkBinding(p.Binding) != nil {
			t.Fatalf("accepted binding %q", p.Binding)
		}
	})
}
