package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/scenarios/agent"
)

// newAgentCmd is the hidden `idlegate agent KIND [flags]` that scenarios start inside a lab
// namespace. docs/agents.md is its contract: NDJSON events on stdout, exit 0 when the agent
// ran its job whatever the outcome, 2 for bad flags, 1 for a setup failure.
func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "agent KIND [flags]",
		Short: "Run a built-in agent (used by scenarios)",
		Long: `Run one built-in agent: it does its job with real kernel sockets and reports each
step as one JSON line on stdout (see docs/agents.md). Servers run until SIGTERM or
Ctrl-C; clients stop when their job is done. 'idlegate agent KIND --help' lists a
kind's flags.

Kinds: ` + strings.Join(agent.KindNames(), ", "),
		Example: `  idlegate agent tcp-echo-server --listen 0.0.0.0:7000 --idle-close 30s
  idlegate agent tcp-client --connect 198.19.0.2:7000 --pattern send:a,idle:7s,send:b --keepalive-idle 2s`,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
				if len(args) == 0 {
					return usagef("agent needs a KIND, one of: %s", strings.Join(agent.KindNames(), ", "))
				}
				return cmd.Help()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := agent.Run(ctx, args[0], args[1:], cmd.OutOrStdout())
			var ue agent.UsageError
			switch {
			case err == nil, errors.Is(err, flag.ErrHelp):
				return nil
			case errors.As(err, &ue) && agent.Kinds[args[0]] == nil:
				return usageError{err}
			case errors.As(err, &ue):
				return usageError{fmt.Errorf("%w (see `idlegate agent %s --help`)", err, args[0])}
			}
			return err
		},
	}
}
