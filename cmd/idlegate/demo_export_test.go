package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/scenarios"
)

// What the tests of package main_test (demo_test.go) need from the command, which
// they also run as the built binary.
var (
	DemoStories   = demoStories
	ErrDemoFailed = errDemoFailed
	ExitCode      = exitCode
)

func NewDemoCmd() *cobra.Command { return newDemoCmd() }

// RunDemo plays stories as `idlegate demo --name name` does, with binary running the
// agents (a test binary cannot).
func RunDemo(ctx context.Context, w io.Writer, name, binary string, stories []*scenarios.Scenario) error {
	return runDemo(ctx, w, demoOpts{name: name, binary: binary}, stories)
}
