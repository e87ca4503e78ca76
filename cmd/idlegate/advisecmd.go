package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/policy"
)

func newAdviseCmd() *cobra.Command {
	var profile, config, out, name string
	var sets []string
	var scale float64
	c := &cobra.Command{
		Use:   "advise (--profile NAME | --config FILE | --set K=V... | --name LAB)",
		Short: "Keepalive settings, for both ends, that keep idle connections alive through a middlebox",
		Long: `Print keepalive settings, with margin, that keep an idle TCP connection alive through the box,
for both ends and each common tool: Linux sysctls and socket options, Go (net.Dialer, net/http
client and server, database/sql), libpq, psycopg, the PostgreSQL server, pgjdbc, HikariCP,
the Redis server, redis-py, go-redis, Jedis, Python requests, curl, nginx (facing clients and
as a proxy), HAProxy, ssh and sshd, grpc-go client and server. Each says where it goes, which
end it protects and what the other end sees; it is marked where it cannot help (a box that
ignores TCP keepalive probes, the AWS ALB, needs application data).

The policy is a built-in profile (--profile), a policy file (--config), --set overrides over
Linux's defaults or over those, or the live policy of a running lab (--name, read from its
control socket as ` + "`policy show`" + ` does; its timeouts are those the lab runs).

Margin rule, for the box's ESTABLISHED idle timeout T: idle = T/2 (min(T/2, T-30s) above
60s), at most 2h, rounded down to whole seconds; 3 probes every (T-idle)/4 (at most 75s,
fewer probes when that is below 1s), so that idle + interval x count < T: a lost probe is
retried before the box forgets the flow, and a dead peer is declared dead before then.
TCP_USER_TIMEOUT = idle + interval x count. Every value is one the tool accepts; a T below
3s gets no TCP setting but a sentence saying why.

With --time-scale the settings are for a lab run at that scale (the box's timeouts
multiplied by it), with the real values alongside. -o json gives the same values: each
setting with its id, side, where, config (the exact text), works, protects, other_side.`,
		Example: `  idlegate advise --profile aws-nat-gateway
  idlegate advise --set timeouts.tcp.established=5s
  idlegate advise --profile aws-alb -o json
  idlegate advise --profile azure-lb --time-scale 0.01
  idlegate advise --config policy.yaml
  sudo idlegate advise --name pool`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := checkScale(scale); err != nil {
				return err
			}
			var p policy.Policy
			var source string
			switch {
			case cmd.Flags().Changed("name"):
				if profile != "" || config != "" || len(sets) > 0 || scale != 1 {
					return usagef("advise --name reads the policy a running lab has; drop --profile, --config, --set and --time-scale (change the lab with `idlegate policy set`)")
				}
				cl, err := dialLab(name)
				if err != nil {
					return err
				}
				if err := cl.do("GET", "/v1/policy", nil, &p); err != nil {
					return err
				}
				source = fmt.Sprintf("lab %s (its live policy)", name)
			case profile == "" && config == "" && len(sets) == 0:
				return usagef("advise needs --profile NAME (see `idlegate profiles`), --config FILE, --set KEY=VALUE (over Linux's defaults) or --name LAB")
			default:
				var err error
				if p, err = loadPolicyFrom(profile, config, sets); err != nil {
					return err
				}
				source = adviceSource(profile, config, sets)
			}
			a := policy.Advise(p, scale)
			a.Source = source
			a.Profile = strings.TrimSpace(profile)
			w := cmd.OutOrStdout()
			if out == "json" {
				return writeJSONOut(w, a)
			}
			fmt.Fprintf(w, "keepalive advice for %s\n", source)
			fmt.Fprint(w, a.String())
			return nil
		},
	}
	c.Flags().StringVar(&profile, "profile", "", "built-in profile `NAME` (idlegate profiles lists them)")
	c.Flags().StringVar(&config, "config", "", "policy YAML `FILE` (over the profile, if both)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override one policy key, `KEY=VALUE` (repeatable; over Linux's defaults without --profile or --config)")
	c.Flags().StringVar(&name, "name", "", "advise for the live policy of the running lab `NAME`")
	outputFlag(c, &out)
	scaleFlag(c, &scale)
	return c
}

// adviceSource says in words what the policy was built from.
func adviceSource(profile, config string, sets []string) string {
	var parts []string
	if profile != "" {
		parts = append(parts, "profile "+strings.TrimSpace(profile))
	}
	if config != "" {
		parts = append(parts, "policy file "+config)
	}
	if len(parts) == 0 {
		parts = append(parts, "Linux defaults")
	}
	s := strings.Join(parts, " + ")
	if len(sets) > 0 {
		s += " with --set " + strings.Join(sets, " --set ")
	}
	return s
}
