// Command idlegate plays a stateful firewall/NAT that forgets idle connections on
// purpose, between a client and a server network namespace.
//
// Exit codes:
//
//	0  success
//	1  the command ran and failed (a demo outcome did not happen, an I/O error)
//	2  bad usage or bad configuration (unknown flag, bad policy file, bad KEY=VALUE)
//	3  the machine cannot run a lab (not root, no /dev/net/tun)
//	4  lab state (no such lab, lab name in use; for a wedge: no such container,
//	   namespace or process, no route between its sides, a wedge already on the pair)
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/tun"
)

const (
	exitFailure = 1
	exitUsage   = 2
	exitEnv     = 3
	exitState   = 4
)

// usageError marks a mistake in what the user typed or wrote (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// stateError is a one-sentence message that matches a sentinel (for the exit code)
// without repeating the sentinel's own text.
type stateError struct {
	msg  string
	kind error
}

func (e stateError) Error() string { return e.msg }
func (e stateError) Unwrap() error { return e.kind }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "idlegate:", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var ue usageError
	var de detachedError
	switch {
	case errors.As(err, &de):
		return de.code
	case errors.As(err, &ue), errors.Is(err, lab.ErrBadName), errors.Is(err, capture.ErrRefused):
		return exitUsage
	case errors.Is(err, lab.ErrNotRoot), errors.Is(err, tun.ErrNoTUN):
		return exitEnv
	case errors.Is(err, lab.ErrNoSuchLab), errors.Is(err, lab.ErrInUse):
		return exitState
	}
	return exitFailure
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "idlegate",
		Short: "A firewall/NAT that forgets idle connections on purpose",
		Long: `idlegate sits between a client and a server network namespace and plays a stateful
firewall or NAT with per-state idle timeouts and a bounded table. Packets of flows it
forgot are dropped, reset, answered with ICMP, or remapped, as real middleboxes do.

Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 the machine cannot
run a lab (not root, no /dev/net/tun), 4 lab state (no such lab, name in use).`,
		Example: `  sudo idlegate lab up --config policy.yaml --detach
  sudo idlegate lab exec client -- curl http://198.19.0.2/
  sudo idlegate ct list
  sudo idlegate demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%v (see `%s --help`)", err, c.CommandPath())}
	})
	root.AddCommand(newLabCmd(), newWedgeCmd(), newCtCmd(), newPolicyCmd(), newPcapCmd(), newDemoCmd(), newVersionCmd())
	root.AddCommand(newAgentCmd())
	root.AddCommand(newScenarioCmd())
	root.AddCommand(newProfilesCmd(), newReplayCmd(), newAdviseCmd())
	return root
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  idlegate version",
		Args:    cobra.NoArgs,
		Run:     func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "idlegate", version) },
	}
}

// outputFlag adds -o/--output with "text" (default) or "json".
func outputFlag(c *cobra.Command, out *string) {
	c.Flags().StringVarP(out, "output", "o", "text", "output format: text or json")
}

func checkOutput(out string) error {
	if out != "text" && out != "json" {
		return usagef("--output %q is not text or json", out)
	}
	return nil
}

// nameFlag adds --name for commands that address a lab. Its default is *name, or
// lab.DefaultName if that is empty.
func nameFlag(c *cobra.Command, name *string) {
	def := *name
	if def == "" {
		def = lab.DefaultName
	}
	c.Flags().StringVar(name, "name", def, "lab name")
}

// writeJSONOut writes v as indented JSON, for -o json.
func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
