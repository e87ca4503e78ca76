// Command idlegate plays a stateful firewall/NAT that forgets idle connections on
// purpose, between a client and a server network namespace.
//
// Exit codes:
//
//	0  success
//	1  the command ran and failed (a demo outcome did not happen, an I/O error)
//	2  bad usage or bad configuration (unknown command or flag, bad policy file, bad
//	   KEY=VALUE, bad filter)
//	3  the machine cannot run a lab (not root, no /dev/net/tun, a root-only control socket)
//	4  lab state (no such lab, lab name in use, a gateway that died or stopped; for a
//	   wedge also no such container, namespace or process, no route between its sides,
//	   a wedge already on the pair)
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/internal/version"
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
	var ae *control.Error
	switch {
	case errors.As(err, &de):
		return de.code
	case errors.As(err, &ue), errors.Is(err, lab.ErrBadName), errors.Is(err, capture.ErrRefused):
		return exitUsage
	case errors.Is(err, lab.ErrNotRoot), errors.Is(err, tun.ErrNoTUN), errors.Is(err, control.ErrPermission):
		return exitEnv
	case errors.Is(err, lab.ErrNoSuchLab), errors.Is(err, lab.ErrInUse),
		errors.Is(err, control.ErrNotRunning), errors.Is(err, control.ErrStreamEnded):
		return exitState
	case errors.As(err, &ae):
		// The gateway refused what was asked (a bad filter or value, a change it
		// cannot make live): usage. Anything else it answers is a failure.
		if ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict {
			return exitUsage
		}
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
run a lab (not root, no /dev/net/tun, a root-only control socket), 4 lab state (no such
lab, name in use, a gateway that died or stopped).

Commands that address a lab take --name NAME, by default $IDLEGATE_LAB, else idlegate.`,
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
	root.Version = version.Get().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(newLabCmd(), newWedgeCmd(), newCtCmd(), newPolicyCmd(), newPcapCmd(), newDemoCmd(), newVersionCmd())
	root.AddCommand(newAgentCmd())
	root.AddCommand(newScenarioCmd())
	root.AddCommand(newProfilesCmd(), newReplayCmd(), newAdviseCmd())
	root.AddCommand(newReportCmd())
	refuseUnknownCommands(root)
	return root
}

// refuseUnknownCommands makes every command that only groups others (root, lab, ct,
// ...) answer an unknown subcommand with a usage error (exit 2) instead of its help
// and 0; without arguments it prints its help.
func refuseUnknownCommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownCommands(sub)
	}
	if !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		cmd.SuggestionsMinimumDistance = 2
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		return usagef("%s; its commands are %s", msg, strings.Join(names, ", "))
	}
}

func newVersionCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the version this binary was built as (also --version)",
		Long: `Print the version: the git describe of the tree ` + "`make build`" + ` built, or the module
version ` + "`go install .../cmd/idlegate@VERSION`" + ` recorded, with the Go version and the commit.
A running gateway tells its own on GET /v1/version and in idlegate_build_info.`,
		Example: "  idlegate version\n  idlegate --version\n  idlegate version -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			v := version.Get()
			if out == "json" {
				return writeJSONOut(cmd.OutOrStdout(), v)
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		},
	}
	outputFlag(c, &out)
	return c
}

// outputFlag adds -o/--output with "text" (default) or "json".
func outputFlag(c *cobra.Command, out *string) {
	outputFlagOf(c, out, "text", "json")
}

// outputFlagOf adds -o/--output with the formats given, the first the default.
func outputFlagOf(c *cobra.Command, out *string, formats ...string) {
	c.Flags().StringVarP(out, "output", "o", formats[0], "output `FORMAT`: "+orList(formats))
	c.Flags().SetAnnotation("output", "formats", formats)
}

func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func checkOutput(out string) error {
	return checkOutputOf(out, "text", "json")
}

func checkOutputOf(out string, formats ...string) error {
	if !slices.Contains(formats, out) {
		return usagef("--output %q is not %s", out, orList(formats))
	}
	return nil
}

// labEnv names the environment variable that gives the default --name.
const labEnv = "IDLEGATE_LAB"

// nameFlag adds --name for commands that address a lab. Its default is *name if
// set, else $IDLEGATE_LAB, else lab.DefaultName.
func nameFlag(c *cobra.Command, name *string) {
	def := *name
	if def == "" {
		def = os.Getenv(labEnv)
	}
	if def == "" {
		def = lab.DefaultName
	}
	c.Flags().StringVar(name, "name", def, "the lab's `NAME`; $"+labEnv+" sets the default")
}

// writeJSONOut writes v as indented JSON, for -o json, with < > & as they are.
func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeOut writes v as -o json or -o yaml asks.
func writeOut(w io.Writer, out string, v any) error {
	if out == "yaml" {
		return writeYAMLOut(w, v)
	}
	return writeJSONOut(w, v)
}
