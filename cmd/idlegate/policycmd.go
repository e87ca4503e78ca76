package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/policy"
)

func newPolicyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Show or change the running gateway's policy",
		Example: `  sudo idlegate policy show
  sudo idlegate policy set timeouts.tcp.established=10s orphan=reset`,
	}
	c.AddCommand(newPolicyShowCmd(), newPolicySetCmd())
	return c
}

func newPolicyShowCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:   "show",
		Short: "Print the policy in force, with the lab's profile and time scale",
		Long: `Print the lab's policy as a policy file writes it, headed by the profile it started from and
the time scale. On a scaled lab the timeouts are in real units, as they were given; the
gateway runs each one times the scale. -o json prints {"profile", "time_scale", "policy"
(real units), "in_force" (as it runs, on a scaled lab)}.`,
		Example: "  sudo idlegate policy show\n  sudo idlegate policy show -o json | jq .policy.timeouts.tcp",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputOf(out, "text", "json", "yaml"); err != nil {
				return err
			}
			l, err := ask(name, func(ctx context.Context, cl *labClient) (control.Lab, error) { return cl.Lab(ctx) })
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "text" {
				return writeOut(w, out, l.PolicyView)
			}
			fmt.Fprintln(w, "# "+policyHeader(l.Name, l.PolicyView))
			fmt.Fprint(w, l.Policy.YAML())
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlagOf(c, &out, "text", "json", "yaml")
	return c
}

// policyHeader says where a lab's policy comes from and at which time scale it runs.
func policyHeader(name string, v control.PolicyView) string {
	from := "Linux netfilter defaults"
	if v.Profile != "" {
		from = "profile " + v.Profile
	}
	if s := v.Scale(); s != 1 {
		return fmt.Sprintf("lab %s: %s, time scale %g: timeouts below are real, each runs x%g (tcp established %s)",
			name, from, s, s, policy.FormatScaled(time.Duration(v.Policy.Timeouts.TCP.Established), s))
	}
	return fmt.Sprintf("lab %s: %s, time scale 1 (real time)", name, from)
}

func newPolicySetCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Change policy keys live (timeouts, orphan, refresh, on_full, reset_on_expire, ...)",
		Long: `Change policy keys of the running gateway, all or none, written as in a policy file
(timeouts.tcp.established=10s). On a scaled lab (lab up --time-scale) durations are in real
units, as lab up takes them: the gateway runs them scaled, and both values are printed.
capacity and nat cannot change while the gateway runs.`,
		Example: `  sudo idlegate policy set timeouts.tcp.established=10s
  sudo idlegate policy set orphan=reset refresh=data`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			for _, kv := range args {
				if !strings.Contains(kv, "=") {
					return usagef("%q is not KEY=VALUE, e.g. timeouts.tcp.established=10s", kv)
				}
			}
			v, err := ask(name, func(ctx context.Context, cl *labClient) (control.PolicyView, error) {
				return cl.SetPolicy(ctx, args...)
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out == "json" {
				return writeJSONOut(w, v)
			}
			printPolicySet(w, args, v)
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	return c
}

// printPolicySet says what changed; on a scaled lab each duration with the value it
// runs at.
func printPolicySet(w io.Writer, sets []string, v control.PolicyView) {
	s := v.Scale()
	var parts []string
	for _, kv := range sets {
		k, val, _ := strings.Cut(kv, "=")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if d, err := policy.ParseDuration(val); err == nil && s != 1 && strings.HasPrefix(k, "timeouts.") {
			parts = append(parts, k+"="+policy.FormatScaled(time.Duration(d), s))
			continue
		}
		parts = append(parts, k+"="+val)
	}
	fmt.Fprintf(w, "policy updated: %s\n", strings.Join(parts, " "))
	if s != 1 {
		fmt.Fprintf(w, "time scale %g: durations are real, the gateway runs them x%g\n", s, s)
	}
}
