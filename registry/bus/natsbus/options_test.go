package natsbus

import (
	"context"
	"strings"
	"testing"
)

// Open refuses bad options with an error naming the option, and nothing
// else: a NATS that is down is no reason to refuse.
func TestOpenRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no URL", Options{Node: "n1"}, "Options.URL is empty"},
		{"empty URL entry", Options{URL: "nats://127.0.0.1:4222,,", Node: "n1"}, "Options.URL"},
		{"bad scheme", Options{URL: "http://127.0.0.1:4222", Node: "n1"}, `scheme "http"`},
		{"no host", Options{URL: "nats://", Node: "n1"}, "no host"},
		{"no node", Options{URL: "nats://127.0.0.1:1"}, "Options.Node"},
		{"upper-case node", Options{URL: "nats://127.0.0.1:1", Node: "Node1"}, "Options.Node"},
		{"node with a dot", Options{URL: "nats://127.0.0.1:1", Node: "a.b"}, "Options.Node"},
		{"node too long", Options{URL: "nats://127.0.0.1:1", Node: strings.Repeat("a", 33)}, "Options.Node"},
		{"prefix with a wildcard", Options{URL: "nats://127.0.0.1:1", Node: "n1", Prefix: "iot.*"}, "Options.Prefix"},
		{"prefix with an empty token", Options{URL: "nats://127.0.0.1:1", Node: "n1", Prefix: "iot..gate"}, "Options.Prefix"},
		{"negative timeout", Options{URL: "nats://127.0.0.1:1", Node: "n1", CallTimeout: -1}, "Options.CallTimeout"},
		{"negative in flight", Options{URL: "nats://127.0.0.1:1", Node: "n1", MaxInFlight: -1}, "Options.MaxInFlight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Open(context.Background(), tc.o)
			if err == nil {
				b.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	got := redact("nats://u:secret@127.0.0.1:4222,nats://127.0.0.1:4223")
	if strings.Contains(got, "secret") || !strings.Contains(got, "127.0.0.1:4223") {
		t.Fatalf("redacted to %q", got)
	}
	if err := (&Options{URL: "http://u:secret@h:1", Node: "n1"}).validate(); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v", err)
	}
}

// A node name is one subject token of the allowed characters.
func TestValidNode(t *testing.T) {
	for s, want := range map[string]bool{"a": true, "node-1": true, strings.Repeat("z", 32): true,
		"": false, "a b": false, "a>": false, "é": false, strings.Repeat("z", 33): false} {
		if validNode(s) != want {
			t.Errorf("validNode(%q) = %v", s, !want)
		}
	}
}
