package main

import (
	"runtime/debug"
	"strings"
)

// readBuildInfo is the binary's build information (nil when it has none).
func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
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
