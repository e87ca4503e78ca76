package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/replay"
	"github.com/idlegate/idlegate/report"
)

type replayOpts struct {
	profiles []string
	config   string
	inside   []string
	out      string
	write    string
	scale    float64
	all      bool
	html     string
}

func newReplayCmd() *cobra.Command {
	var o replayOpts
	c := &cobra.Command{
		Use:   "replay CAPTURE --profile NAME[,NAME2,...]",
		Short: "Replay a pcap/pcapng capture through middlebox profiles, offline, in virtual time",
		Long: `Run a capture through one or more profiles in virtual time, using the capture's own
timestamps, and report per flow whether it survived: or the first packet the box dropped or
reset (packet number, time, idle time before it, the timeout that fired), an eviction from a
full table, a NAT remap (a new outside port after expiry: the server resets), or a RST at
expiry. With several profiles it prints a matrix of flows x profiles and one sentence.

Captures: pcap or pcapng (gzip too), link types Ethernet (with VLAN tags), Linux cooked
(SLL, SLL2) and raw IP. Inside/outside: the interfaces of an idlegate pcapng (0 inside,
1 outside), else --inside, else per flow from who opened it (SYN sender, first UDP sender).
With --inside the box also routes as a router there would: everything else is outside, a
packet from the wrong side is dropped as spoofed, one to its own side as no-route; without
--inside it knows no networks and drops only martians and bad IPv4 header checksums.
A capture has no NAT: for NAT profiles an inbound packet is addressed to the flow's current
outside mapping before the engine sees it. A flow already open when the capture started
gets a synthetic handshake. No root needed.`,
		Example: `  idlegate replay app.pcap --profile aws-nat-gateway
  idlegate replay app.pcap --profile linux-conntrack,aws-nat-gateway,gcp-cloud-nat
  idlegate replay app.pcapng --profile aws-alb --inside 10.0.0.0/8 -o json
  idlegate replay lab.pcapng --profile aws-nat-gateway --time-scale 0.01 --write crossed.pcapng
  idlegate replay app.pcap --profile linux-conntrack,aws-nat-gateway --html app.html`,
		Args: exactArgs(1, "one capture file, e.g. idlegate replay app.pcap --profile aws-nat-gateway"),
		RunE: func(cmd *cobra.Command, args []string) error { return runReplay(cmd, args[0], o) },
	}
	c.Flags().StringSliceVar(&o.profiles, "profile", nil, "the `NAMES` of the profiles to replay through, comma-separated (idlegate profiles lists them)")
	c.Flags().StringVar(&o.config, "config", "", "also replay through this policy YAML `FILE`")
	c.Flags().StringSliceVar(&o.inside, "inside", nil, "inside (client-side) networks, `CIDRS` comma-separated")
	c.Flags().StringVar(&o.write, "write", "", "write what would have crossed plus injected RSTs to `FILE` (.pcapng: with verdict comments; else pcap); one profile only")
	c.Flags().BoolVar(&o.all, "all", false, "list every flow, even in a large capture")
	c.Flags().StringVar(&o.html, "html", "", "also write a self-contained HTML report to `FILE`: flows x profiles, and per profile the sequence diagram, idle timers and table")
	outputFlag(c, &o.out)
	scaleFlag(c, &o.scale)
	return c
}

func runReplay(cmd *cobra.Command, capture string, o replayOpts) error {
	if err := checkOutput(o.out); err != nil {
		return err
	}
	if err := checkScale(o.scale); err != nil {
		return err
	}
	var profs []replay.Profile
	for _, name := range o.profiles {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		pr, err := policy.LookupProfile(name)
		if err != nil {
			return usagef("--profile: %v", err)
		}
		profs = append(profs, replay.Profile{Name: pr.Name, Policy: pr.Policy()})
	}
	if o.config != "" {
		p, err := readPolicyFile(policy.Default(), o.config)
		if err != nil {
			return usageError{err}
		}
		profs = append(profs, replay.Profile{Name: filepath.Base(o.config), Policy: p})
	}
	if len(profs) == 0 {
		return usagef("replay needs --profile NAME[,NAME...] (see `idlegate profiles`) or --config FILE")
	}
	opt := replay.Options{Profiles: profs, Scale: o.scale}
	for _, s := range o.inside {
		pfx, err := parseInside(s)
		if err != nil {
			return err
		}
		opt.Inside = append(opt.Inside, pfx)
	}
	f, err := os.Open(capture)
	if err != nil {
		return usagef("cannot open capture %s: %v", capture, errors.Unwrap(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return usagef("%s is a directory; give a pcap or pcapng file in it (tcpdump -w, or idlegate's --pcap)", capture)
	}
	var outFile *os.File
	if o.write != "" {
		if len(profs) != 1 {
			return usagef("--write keeps what crossed one box: give exactly one profile, not %d", len(profs))
		}
		if outFile, err = os.Create(o.write); err != nil {
			return fmt.Errorf("create %s: %w", o.write, err)
		}
		opt.Write = outFile
		opt.WritePcapng = strings.HasSuffix(o.write, ".pcapng")
	}
	if o.html == "-" {
		return usagef("--html -: replay prints its table on stdout; give a file name")
	}
	var rep *replay.Report
	var pic *report.Report
	if o.html != "" {
		pic, rep, err = report.FromReplay(capture, f, opt)
	} else {
		rep, err = replay.Run(capture, f, opt)
	}
	if outFile != nil {
		if cerr := outFile.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", o.write, cerr)
		}
		if err != nil {
			os.Remove(o.write)
		}
	}
	if err != nil {
		var ce *replay.CaptureError
		var le *replay.LinkTypeError
		if errors.As(err, &ce) || errors.As(err, &le) {
			return usageError{err}
		}
		return err
	}
	w := cmd.OutOrStdout()
	if pic != nil {
		msg := w
		if o.out == "json" {
			msg = cmd.ErrOrStderr()
		}
		if err := writeReport(io.Discard, msg, o.html, pic); err != nil {
			return err
		}
	}
	if o.out == "json" {
		return writeJSONOut(w, rep)
	}
	rep.Text(w, o.all)
	if o.write != "" {
		fmt.Fprintf(w, "wrote what crossed %s to %s\n", profs[0].Name, o.write)
	}
	return nil
}

// parseInside reads an --inside value: a CIDR, or a single address.
func parseInside(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, usagef("--inside %q is not a network like 10.0.0.0/8 or an address", s)
}
