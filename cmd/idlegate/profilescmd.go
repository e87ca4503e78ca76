package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/policy"
)

func newProfilesCmd() *cobra.Command {
	var out string
	var scale float64
	c := &cobra.Command{
		Use:   "profiles",
		Short: "List the built-in middlebox profiles (AWS, Azure, GCP, firewalls, Linux, RFC minimum)",
		Long: `Profiles are built-in models of the middleboxes people sit behind: their idle timeouts,
what they do with a packet of a flow they forgot, their NAT and table. Every value carries
its source (vendor document and year); a profile built on an unconfirmed value says so.
Use one with lab up --profile NAME, replay --profile NAME, advise --profile NAME, or a
policy file starting with "from: NAME".`,
		Example: `  idlegate profiles
  idlegate profiles show aws-nat-gateway
  idlegate profiles check aws-nat-gateway
  idlegate profiles --time-scale 0.01`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := checkScale(scale); err != nil {
				return err
			}
			return listProfiles(cmd.OutOrStdout(), out, scale)
		},
	}
	outputFlag(c, &out)
	scaleFlag(c, &scale)
	c.AddCommand(newProfilesShowCmd(), newProfilesCheckCmd())
	return c
}

// scaleFlag adds --time-scale.
func scaleFlag(c *cobra.Command, f *float64) {
	c.Flags().Float64Var(f, "time-scale", 1, "multiply every timeout by `FACTOR` (0.01 turns 350s into 3.5s); output shows scaled and real values")
}

func checkScale(f float64) error {
	if err := policy.CheckScale(f); err != nil {
		return usagef("--time-scale: %v", err)
	}
	return nil
}

// lookupProfile finds a built-in profile; an unknown name is a usage error naming
// the known ones.
func lookupProfile(name string) (policy.Profile, error) {
	pr, err := policy.LookupProfile(strings.TrimSpace(name))
	if err != nil {
		return pr, usageError{err}
	}
	return pr, nil
}

// profileRow is one line of `idlegate profiles -o json`.
type profileRow struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Reflects    string `json:"reflects"`
	Established string `json:"tcp_established"`
	// EstablishedSeconds is the scaled ESTABLISHED timeout.
	EstablishedSeconds float64 `json:"tcp_established_s"`
	RealSeconds        float64 `json:"tcp_established_real_s"`
	AfterExpiry        string  `json:"after_expiry"`
	NAT                bool    `json:"nat"`
	Unconfirmed        bool    `json:"unconfirmed"`
}

// afterExpiry says in a few words what the box does once it forgot a flow.
func afterExpiry(p policy.Policy) string {
	s := p.Orphan.String()
	switch p.Orphan {
	case policy.OrphanDrop:
		s = "silent drop"
	case policy.OrphanReset:
		s = "RST to the sender"
	case policy.OrphanICMP:
		s = "ICMP prohibited"
	case policy.OrphanPickup:
		s = "picked up"
		if p.NAT.Enabled {
			s = "picked up, new port"
		}
	}
	if p.ResetOnExpire {
		s = "RST to both ends at expiry; then " + s
	}
	return s
}

func listProfiles(w io.Writer, out string, scale float64) error {
	var rows []profileRow
	for _, pr := range policy.Profiles() {
		p := pr.Policy()
		est := time.Duration(p.Timeouts.TCP.Established)
		rows = append(rows, profileRow{
			Name: pr.Name, Description: pr.Description, Reflects: pr.Reflects,
			Established: policy.FormatScaled(est, scale), EstablishedSeconds: policy.ScaleDuration(est, scale).Seconds(),
			RealSeconds: est.Seconds(), AfterExpiry: afterExpiry(p), NAT: p.NAT.Enabled, Unconfirmed: pr.Unconfirmed(),
		})
	}
	if out == "json" {
		return writeJSONOut(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTCP IDLE\tAFTER EXPIRY\tNAT\tDESCRIPTION")
	for _, r := range rows {
		nat := "-"
		if r.NAT {
			nat = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Established, r.AfterExpiry, nat, r.Description)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d profiles; `idlegate profiles show NAME` gives every value with its source\n", len(rows))
	return nil
}

func newProfilesShowCmd() *cobra.Command {
	var out string
	var scale float64
	c := &cobra.Command{
		Use:   "show NAME",
		Short: "Print every value of a profile with its source",
		Example: `  idlegate profiles show aws-nat-gateway
  idlegate profiles show azure-lb-tcp-reset -o json
  idlegate profiles show aws-alb --time-scale 0.1`,
		Args: exactArgs(1, "a profile name, e.g. idlegate profiles show aws-nat-gateway"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := checkScale(scale); err != nil {
				return err
			}
			pr, err := lookupProfile(args[0])
			if err != nil {
				return err
			}
			return showProfile(cmd.OutOrStdout(), pr, out, scale)
		},
	}
	outputFlag(c, &out)
	scaleFlag(c, &scale)
	return c
}

// exactArgs is cobra.ExactArgs with a usage error that says what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (got %d arguments)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

// shownValue is one value of `profiles show -o json`.
type shownValue struct {
	policy.Value
	Scaled string `json:"scaled,omitempty"` // the value under --time-scale, for timeouts
}

type shownProfile struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Reflects    string       `json:"reflects"`
	Unconfirmed bool         `json:"unconfirmed"`
	Scale       float64      `json:"time_scale"`
	Values      []shownValue `json:"values"`
	Notes       []string     `json:"notes"`
}

func showProfile(w io.Writer, pr policy.Profile, out string, scale float64) error {
	sp := shownProfile{Name: pr.Name, Description: pr.Description, Reflects: pr.Reflects,
		Unconfirmed: pr.Unconfirmed(), Scale: scale, Notes: pr.Notes}
	if sp.Notes == nil {
		sp.Notes = []string{}
	}
	for _, v := range pr.Values() {
		sv := shownValue{Value: v}
		if strings.HasPrefix(v.Key, "timeouts.") && scale != 1 {
			if d, err := policy.ParseDuration(v.Value); err == nil {
				sv.Scaled = policy.FormatDuration(policy.ScaleDuration(time.Duration(d), scale))
			}
		}
		sp.Values = append(sp.Values, sv)
	}
	if out == "json" {
		return writeJSONOut(w, sp)
	}
	fmt.Fprintf(w, "%s: %s\n", pr.Name, pr.Description)
	fmt.Fprintf(w, "reflects: %s\n", pr.Reflects)
	if scale != 1 {
		fmt.Fprintf(w, "time scale %g: timeouts show the scaled value, then the real one\n", scale)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, v := range sp.Values {
		val := v.Value.Value
		if v.Scaled != "" {
			val = v.Scaled + " (real " + v.Value.Value + ")"
		}
		src := v.Source
		if v.FromProfile {
			src = "* " + src
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Key, val, src)
	}
	tw.Flush()
	fmt.Fprintln(w, "(* set by the profile; other values are idlegate's defaults)")
	for _, n := range sp.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "use it: idlegate lab up --profile %s | idlegate replay CAPTURE --profile %s | idlegate advise --profile %s | from: %s\n",
		pr.Name, pr.Name, pr.Name, pr.Name)
	return nil
}

func newProfilesCheckCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "check NAME",
		Short: "List the RFC 5382, RFC 4787 and RFC 5508 requirements a profile breaks",
		Long: `List the NAT behavioural requirements of RFC 5382 (TCP), RFC 4787 (UDP) and RFC 5508
(ICMP) that the profile breaks, one line each: RFC, requirement number, level, text, and the
values that break it. Mapping and filtering requirements are checked for NAT profiles only;
the timeout floors for every profile, as the reference a middlebox on a path is held to.`,
		Example: "  idlegate profiles check aws-nat-gateway\n  idlegate profiles check rfc-minimum -o json",
		Args:    exactArgs(1, "a profile name, e.g. idlegate profiles check aws-nat-gateway"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			pr, err := lookupProfile(args[0])
			if err != nil {
				return err
			}
			c := policy.Check(pr.Policy())
			w := cmd.OutOrStdout()
			if out == "json" {
				return writeJSONOut(w, struct {
					Profile string `json:"profile"`
					policy.Compliance
				}{pr.Name, c})
			}
			if !c.NAT {
				fmt.Fprintf(w, "%s does no NAT: the RFCs bind NATs; their timeout floors are applied as the reference for any middlebox\n", pr.Name)
			}
			for _, v := range c.Violations {
				fmt.Fprintf(w, "%s %s (%s): %s; here %s\n", v.RFC, v.ID, v.Level, v.Text, v.Detail)
			}
			fmt.Fprintf(w, "%s breaks %d of %d requirements checked\n", pr.Name, len(c.Violations), len(c.Checked))
			fmt.Fprintf(w, "not checked: %s\n", strings.Join(c.NotChecked, "; "))
			return nil
		},
	}
	outputFlag(c, &out)
	return c
}
