// Package version is idlegate's build stamp: the version `make build` writes with
// -ldflags "-X github.com/idlegate/idlegate/internal/version.stamp=$(git describe)",
// else the module version a `go install ...@v1.2.3` build records, else "devel";
// plus the Go version and the VCS revision the build recorded.
package version

import (
	"runtime/debug"

	"github.com/idlegate/idlegate/control"
)

// stamp is set at link time by the Makefile; empty for a plain go build.
var stamp string

// Get returns the build's version.
func Get() control.Version {
	v := control.Version{Version: stamp}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		v.Go = bi.GoVersion
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && v.Revision != "" {
			v.Revision += "-dirty"
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	return v
}
