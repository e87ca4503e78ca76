package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/policy"
)

func newAdviseCmd() *cobra.Command {
	var profile, config, out string
	var sets []string
	var scale float64
	c := &cobra.Command{
		Use:   "advise --profile NAME",
		Short: "Keepalive settings that keep idle connections alive through a middlebox",
		Long: `Print keepalive settings, with margin, that keep an idle TCP connection alive through the
box: Linux sysctls, Go net.Dialer KeepAliveConfig, a libpq connection string, ssh_config,
Redis, nginx upstream keepalive_timeout and HikariCP keepaliveTime. It warns where a setting
cannot help: a box that ignores TCP keepalive probes (the AWS ALB counts data only) needs an
application heartbeat.

Margin rule, for the box's ESTABLISHED idle timeout T: idle = min(T/2, T-30s) (T/2 when
T <= 60s), at most 2h, rounded down; 3 probes every (T-idle)/4 seconds (at most 75s), so
that idle + interval x count < T: one probe lands before the box forgets the flow even if
others are lost, and a dead peer is declared dead before then.

With --time-scale the settings are for a lab run at that scale (whole seconds where the
kernel takes seconds), with the real values alongside.`,
		Example: `  idlegate advise --profile aws-nat-gateway
  idlegate advise --profile aws-alb -o json
  idlegate advise --profile azure-lb --time-scale 0.01
  idlegate advise --config policy.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := checkScale(scale); err != nil {
				return err
			}
			if profile == "" && config == "" {
				return usagef("advise needs --profile NAME (see `idlegate profiles`) or --config FILE")
			}
			p, err := loadPolicyFrom(profile, config, sets)
			if err != nil {
				return err
			}
			a := policy.Advise(p, scale)
			name := profile
			if name == "" {
				name = config
			}
			a.Name = name
			w := cmd.OutOrStdout()
			if out == "json" {
				return writeJSONOut(w, a)
			}
			fmt.Fprintf(w, "keepalive advice for %s\n", name)
			fmt.Fprint(w, a.String())
			return nil
		},
	}
	c.Flags().StringVar(&profile, "profile", "", "built-in profile (see `idlegate profiles`)")
	c.Flags().StringVar(&config, "config", "", "policy YAML file (over the profile, if both)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override one policy key, KEY=VALUE (repeatable)")
	outputFlag(c, &out)
	scaleFlag(c, &scale)
	return c
}
