package main

import (
	"runtime/debug"
	"strings"
)

// Set at link time by builds that have no VCS information to record,
// such as the container image's (its build context holds no .git):
//
//	go build -buildvcs=false -ldflags "-X main.stampedVersion=v1.2.3 -X main.stampedCommit=abc123"
//
// Never assigned at run time.
var stampedVersion, stampedCommit string

// readBuildInfo is the binary's build information (nil when it has none),
// with the link-time stamps where the build recorded nothing.
func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return stamp(bi, stampedVersion, stampedCommit)
}

// stamp fills in bi's module version and VCS revision from version and
// commit (when not empty) where the build recorded none: what go build
// recorded itself is never overridden.
func stamp(bi *debug.BuildInfo, version, commit string) *debug.BuildInfo {
	if version != "" && (bi.Main.Version == "" || bi.Main.Version == "(devel)") {
		bi.Main.Version = version
	}
	if commit == "" {
		return bi
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return bi
		}
	}
	bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: commit})
	return bi
}

// versionLine is what `iotgate version` prints: the module's version
// ("(devel)" for a build from a checkout), the commit the binary was
// built from (with "-dirty" when the tree had changes, "unknown" when
// the build recorded none, e.g. -buildvcs=false), its time, and the Go
// version.
func versionLine(bi *debug.BuildInfo) string {
	if bi == nil {
		return "iotgate unknown (no build information)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	commit, when, dirty := "unknown", "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		commit += "-dirty"
	}
	var b strings.Builder
	b.WriteString("iotgate " + version + " commit " + commit)
	if when != "" {
		b.WriteString(" (" + when + ")")
	}
	b.WriteString(" " + bi.GoVersion)
	return b.String()
}
