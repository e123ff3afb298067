package cli

import (
	"fmt"
	"runtime/debug"
)

// Version says which build a binary is: its module version, or the commit
// it was built from (with "+dirty" for uncommitted changes) when built from
// a checkout, and the Go version.
func Version(prog string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return prog + " (unknown build)"
	}
	version := info.Main.Version
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if revision != "" && (version == "" || version == "(devel)") {
		version = revision[:min(12, len(revision))] + modified
	}
	if version == "" {
		version = "(devel)"
	}
	return fmt.Sprintf("%s %s (%s)", prog, version, info.GoVersion)
}
