package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"none", nil, "iotgate unknown (no build information)"},
		{"checkout, no vcs", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"iotgate (devel) commit unknown go1.26.8"},
		{"module version, clean commit", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-07T08:00:00Z"},
				{Key: "vcs.modified", Value: "false"}}},
			"iotgate v1.2.3 commit abc123 (2026-12-07T08:00:00Z) go1.26.8"},
		{"dirty tree", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}},
			"iotgate (devel) commit abc123-dirty go1.26.8"},
	} {
		if got := versionLine(tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStamp(t *testing.T) {
	devel := func() *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	}
	recorded := func() *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}
	}
	for _, tc := range []struct {
		name            string
		bi              *debug.BuildInfo
		version, commit string
		want            string
	}{
		{"no stamps", devel(), "", "", "iotgate (devel) commit unknown go1.26.8"},
		{"image build", devel(), "v1.3.0", "def456-dirty", "iotgate v1.3.0 commit def456-dirty go1.26.8"},
		{"commit only", devel(), "", "def456", "iotgate (devel) commit def456 go1.26.8"},
		{"what go build recorded wins", recorded(), "v9.9.9", "def456", "iotgate v1.2.3 commit abc123 go1.26.8"},
	} {
		if got := versionLine(stamp(tc.bi, tc.version, tc.commit)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
