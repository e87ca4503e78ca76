package idlegatetest_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/idlegate/idlegate/lab"
)

// TestMain skips the examples on a machine that cannot run a lab: an example cannot
// skip itself, and each builds a lab. In CI (CI=true) they run, and fail there
// rather than pass unseen.
func TestMain(m *testing.M) {
	flag.Parse()
	if err := lab.CheckHost(); err != nil && os.Getenv("CI") != "true" {
		skip := flag.Lookup("test.skip")
		pattern := "^Example"
		if old := skip.Value.String(); old != "" {
			pattern = old + "|" + pattern
		}
		if err := skip.Value.Set(pattern); err != nil {
			fmt.Fprintln(os.Stderr, "idlegatetest:", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "idlegatetest: the examples build labs and are skipped: %v (run the tests as root; with CI=true they run and fail)\n", err)
	}
	os.Exit(m.Run())
}
