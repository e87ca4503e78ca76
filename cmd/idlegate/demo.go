package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/scenarios"
)

var errDemoFailed = errors.New("the demo's outcomes did not happen as expected")

// demoStories are the playbook stories `idlegate demo` plays, in order.
var demoStories = []string{"idle-reset", "tcp-keepalive-saves"}

type demoOpts struct {
	// name is the lab each story runs in, one story after the other.
	name string
	// binary runs the stories' agents; "" means this executable (scenarios.Options.Binary).
	binary string
}

func newDemoCmd() *cobra.Command {
	o := demoOpts{name: "idlegate-demo"}
	c := &cobra.Command{
		Use:   "demo",
		Short: "The flagship story: an idle connection dies at the box, TCP keepalive saves it",
		Long: `Play two stories of the keepalive playbook, exactly as ` + "`idlegate scenario run`" + ` plays them,
with real kernel TCP stacks through a gateway that forgets TCP connections idle for 3 s
and answers orphans with a RST:
  1. idle-reset: a connection idles past that timeout, then writes: the gateway forgot it,
     and the client gets ECONNRESET;
  2. tcp-keepalive-saves: the same with TCP keepalive below the timeout: the probes keep
     the entry alive and the write is echoed, while a twin without keepalive is reset.
Each story prints its timeline (client | gateway | server), its expectations and a verdict.
Exits 0 only if both stories happened as written, 1 if not, 3 if the machine cannot run
a lab (not root, no /dev/net/tun), 4 if lab --name is in use.
The story files: ` + "`idlegate scenario show idle-reset`" + ` (or tcp-keepalive-saves).`,
		Example: "  sudo idlegate demo\n  sudo idlegate demo --name demo2\n  idlegate scenario show tcp-keepalive-saves",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			var list []*scenarios.Scenario
			for _, name := range demoStories {
				s, err := scenarios.Lookup(name)
				if err != nil {
					return err
				}
				list = append(list, s)
			}
			return runDemo(ctx, cmd.OutOrStdout(), o, list)
		},
	}
	c.Flags().StringVar(&o.name, "name", o.name, "the lab's `NAME` (the stories run in it one after the other)")
	return c
}

// runDemo plays stories one after the other in lab o.name, each through scenarios.Run
// and printed by Report.WriteText as `idlegate scenario run` does. It returns
// errDemoFailed unless every story passed.
func runDemo(ctx context.Context, w io.Writer, o demoOpts, stories []*scenarios.Scenario) error {
	if err := lab.CheckName(o.name); err != nil {
		return usageError{err}
	}
	if err := lab.CheckHost(); err != nil {
		return err
	}
	fmt.Fprintln(w, "idlegate demo plays these stories of the keepalive playbook through a gateway that forgets idle connections:")
	for i, s := range stories {
		fmt.Fprintf(w, "  %d. %s: %s\n", i+1, s.Name, s.Title)
	}
	fmt.Fprintln(w, "Each prints its timeline (client | gateway | server), its expectations and a verdict.")

	var failed []string
	for i, s := range stories {
		fmt.Fprintf(w, "\n--- story %d of %d, %s: what the timeline will show\n", i+1, len(stories), s.Name)
		for _, line := range strings.Split(strings.TrimSpace(s.Story), "\n") {
			fmt.Fprintln(w, "    "+line)
		}
		fmt.Fprintln(w)
		rep, err := scenarios.Run(ctx, s, scenarios.Options{LabName: o.name, Binary: o.binary})
		if err != nil {
			return err
		}
		rep.WriteTextWidth(w, termWidth())
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; every lab and process was removed")
		}
		if !rep.Pass {
			failed = append(failed, s.Name)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nresult: FAIL — %s did not happen as the playbook says (see the expectations above)\n", strings.Join(failed, ", "))
		return errDemoFailed
	}
	fmt.Fprintln(w, "\nresult: PASS — the idle connection died at the box; TCP keepalive below the box's timeout kept the other alive.")
	fmt.Fprintln(w, "fix in production: set TCP keepalive (or an application heartbeat) below your middlebox's idle timeout;")
	fmt.Fprintln(w, "`idlegate advise --profile NAME` gives the settings, `idlegate scenario list` the other stories.")
	return nil
}
