package version

import (
	"runtime"
	"testing"
)

// TestStamp: the link-time stamp wins; without it the build info speaks, and the
// version is never empty.
func TestStamp(t *testing.T) {
	old := stamp
	defer func() { stamp = old }()
	stamp = "v1.2.3-4-gabcdef0"
	if v := Get(); v.Version != "v1.2.3-4-gabcdef0" || v.Go != runtime.Version() {
		t.Errorf("with a stamp: %+v", v)
	}
	stamp = ""
	if v := Get(); v.Version == "" {
		t.Errorf("without a stamp: %+v, want devel or the module version", v)
	}
}
