package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/policy"
)

func newCtCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "ct",
		Short: "Look at and change the gateway's connection table (like conntrack -L/-E/-F)",
		Example: `  sudo idlegate ct list
  sudo idlegate ct events --verdicts
  sudo idlegate ct flush
  sudo idlegate ct stats -o json`,
	}
	c.AddCommand(newCtListCmd(), newCtEventsCmd(), newCtFlushCmd(), newCtStatsCmd())
	return c
}

func newCtListCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:     "list",
		Short:   "List tracked connections: state, seconds left, both tuples, NAT, counters",
		Example: "  sudo idlegate ct list\n  sudo idlegate ct list --name pool -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return queryLab(cmd.OutOrStdout(), name, out, "GET", "/v1/conntrack", nil, printConns)
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	return c
}

// printConns prints the table in conntrack -L's spirit, one connection a line.
func printConns(w io.Writer, rows []gateway.Conn) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tSTATE\tLEFT\tORIGINAL\tREPLY\tNAT\tPKTS\tBYTES")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%s\t%s\t%s\t%d/%d\t%d/%d\n", r.Proto, r.State, r.TimeoutLeft,
			tupleString(r.Orig), tupleString(r.Reply), dash(r.NAT), r.Packets[0], r.Packets[1], r.Bytes[0], r.Bytes[1])
	}
	tw.Flush()
	if len(rows) == 1 {
		fmt.Fprintln(w, "1 connection")
	} else {
		fmt.Fprintf(w, "%d connections\n", len(rows))
	}
}

func tupleString(t gateway.Tuple) string {
	return fmt.Sprintf("%s -> %s", joinHostPort(t.Src, t.SrcPort), joinHostPort(t.Dst, t.DstPort))
}

func joinHostPort(a string, p uint16) string {
	if strings.Contains(a, ":") {
		return fmt.Sprintf("[%s]:%d", a, p)
	}
	return fmt.Sprintf("%s:%d", a, p)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// queryLab asks lab name's control API (method, path, body) and prints the answer:
// as JSON with -o json, else through text.
func queryLab[T any](w io.Writer, name, out, method, path string, body any, text func(io.Writer, T)) error {
	if err := checkOutput(out); err != nil {
		return err
	}
	cl, err := dialLab(name)
	if err != nil {
		return err
	}
	var v T
	if err := cl.do(method, path, body, &v); err != nil {
		return err
	}
	if out == "json" {
		return writeJSONOut(w, v)
	}
	text(w, v)
	return nil
}

func newCtEventsCmd() *cobra.Command {
	var name, out string
	var verdicts bool
	c := &cobra.Command{
		Use:   "events",
		Short: "Follow connection events (NEW, UPDATE, DESTROY with reason) until Ctrl-C",
		Example: `  sudo idlegate ct events
  sudo idlegate ct events --verdicts -o json | jq .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			cl, err := dialLab(name)
			if err != nil {
				return err
			}
			path := "/v1/events"
			if verdicts {
				path += "?verdicts=1"
			}
			body, err := cl.stream(path)
			if err != nil {
				return err
			}
			defer body.Close()
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			go func() { <-sig; body.Close() }()
			w := cmd.OutOrStdout()
			sc := bufio.NewScanner(body)
			for sc.Scan() {
				if out == "json" {
					fmt.Fprintln(w, sc.Text())
					continue
				}
				var ev gateway.EventJSON
				if json.Unmarshal(sc.Bytes(), &ev) == nil {
					fmt.Fprintln(w, formatEvent(ev))
				}
			}
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	c.Flags().BoolVar(&verdicts, "verdicts", false, "also show one VERDICT event per packet")
	return c
}

// formatEvent prints one event the way conntrack -E does, plus idlegate's reasons.
func formatEvent(ev gateway.EventJSON) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.3fs %-9s", ev.T, "["+ev.Type+"]")
	if ev.Proto != "" {
		fmt.Fprintf(&b, " %-4s", ev.Proto)
	}
	if ev.State != "" {
		if ev.OldState != "" && ev.OldState != ev.State && ev.Type == conntrack.EventUpdate.String() {
			fmt.Fprintf(&b, " %s->%s", ev.OldState, ev.State)
		} else {
			fmt.Fprintf(&b, " %s", ev.State)
		}
	}
	if ev.Orig != "" {
		fmt.Fprintf(&b, " %s", stripProto(ev.Orig))
	}
	switch {
	case ev.Verdict != "":
		keepalive := ""
		if ev.Keepalive {
			keepalive = " keepalive"
		}
		fmt.Fprintf(&b, " verdict=%s (%s %s%s)", ev.Verdict, ev.Dir, ev.Reason, keepalive)
	case ev.Reason != "":
		fmt.Fprintf(&b, " reason=%s", ev.Reason)
		if ev.Reason == conntrack.ReasonExpired.String() {
			fmt.Fprintf(&b, " idle=%.1fs timeout=%.1fs", ev.Idle, ev.Timeout)
		}
	}
	return b.String()
}

func stripProto(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 && i < 7 {
		return s[i+1:]
	}
	return s
}

func newCtFlushCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:     "flush",
		Short:   "Forget every connection and NAT mapping, as a middlebox reboot does",
		Example: "  sudo idlegate ct flush",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return queryLab(cmd.OutOrStdout(), name, out, "POST", "/v1/flush", struct{}{}, func(w io.Writer, res map[string]int) {
				fmt.Fprintf(w, "flushed %d connections\n", res["flushed"])
			})
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	return c
}

func newCtStatsCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:     "stats",
		Short:   "Print the gateway's counters: verdicts, reasons, table, devices",
		Example: "  sudo idlegate ct stats -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return queryLab(cmd.OutOrStdout(), name, out, "GET", "/v1/stats", nil, func(w io.Writer, st gateway.StatsJSON) {
				fmt.Fprintf(w, "uptime %.0fs, %d connections, %d NAT mappings, %d packets injected\n", st.Uptime, st.Entries, st.NATMaps, st.Injected)
				fmt.Fprintf(w, "verdicts: %s\n", countsLine(st.Verdicts))
				fmt.Fprintf(w, "reasons:  %s\n", countsLine(st.Reasons))
				fmt.Fprintf(w, "inside:   rx %d pkts, tx %d pkts; outside: rx %d pkts, tx %d pkts\n",
					st.Inside.RxPackets, st.Inside.TxPackets, st.Outside.RxPackets, st.Outside.TxPackets)
				if st.Pcap != "" {
					fmt.Fprintf(w, "pcap:     recording to %s\n", st.Pcap)
				}
				if st.PcapFailed != nil {
					fmt.Fprintf(w, "pcap:     %s\n", st.PcapFailed)
				}
			})
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	return c
}

func countsLine(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func newPolicyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Show or change the running gateway's policy",
		Example: `  sudo idlegate policy show
  sudo idlegate policy set timeouts.tcp.established=10s orphan=reset`,
	}
	var name, out string
	show := &cobra.Command{
		Use:     "show",
		Short:   "Print the policy in force (YAML, or JSON with -o json)",
		Example: "  sudo idlegate policy show",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			cl, err := dialLab(name)
			if err != nil {
				return err
			}
			if out == "json" {
				var p policy.Policy
				if err := cl.do("GET", "/v1/policy", nil, &p); err != nil {
					return err
				}
				return writeJSONOut(cmd.OutOrStdout(), p)
			}
			return cl.do("GET", "/v1/policy?format=yaml", nil, cmd.OutOrStdout())
		},
	}
	nameFlag(show, &name)
	outputFlag(show, &out)
	var setName string
	set := &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Change policy keys live (timeouts, orphan, refresh, on_full, reset_on_expire, ...)",
		Example: `  sudo idlegate policy set timeouts.tcp.established=10s
  sudo idlegate policy set orphan=reset refresh=data`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, kv := range args {
				if !strings.Contains(kv, "=") {
					return usagef("%q is not KEY=VALUE, e.g. timeouts.tcp.established=10s", kv)
				}
			}
			cl, err := dialLab(setName)
			if err != nil {
				return err
			}
			if err := cl.do("POST", "/v1/policy", map[string][]string{"set": args}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy updated: %s\n", strings.Join(args, " "))
			return nil
		},
	}
	nameFlag(set, &setName)
	c.AddCommand(show, set)
	return c
}

func newPcapCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "pcap",
		Short: "Start or stop recording what crosses a running gateway",
		Example: `  sudo idlegate pcap start /tmp/run.pcapng
  sudo idlegate pcap stop`,
	}
	var name string
	var force bool
	start := &cobra.Command{
		Use:   "start FILE",
		Short: "Record to a new pcapng file, mode 0600 (each packet's comment gives its verdict)",
		Long: `Record what crosses the gateway to FILE, a new pcapng file of mode 0600 (every payload
is in it). A symbolic link or a file that is not regular is refused; so is an existing file,
unless --force. A recording in progress is replaced; what it holds is printed.`,
		Example: `  sudo idlegate pcap start /tmp/run.pcapng
  tshark -r /tmp/run.pcapng -T fields -e frame.comment`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dialLab(name)
			if err != nil {
				return err
			}
			path := absPath(args[0])
			var ans gateway.PcapAnswer
			if err := cl.do("POST", "/v1/pcap", gateway.PcapRequest{Path: path, Force: force}, &ans); err != nil {
				return err
			}
			if ans.Ended != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "previous recording: %s\n", ans.Ended)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "recording to %s\n", path)
			return nil
		},
	}
	nameFlag(start, &name)
	start.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	var stopName string
	stop := &cobra.Command{
		Use:     "stop",
		Short:   "Stop recording and close the file",
		Example: "  sudo idlegate pcap stop",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := dialLab(stopName)
			if err != nil {
				return err
			}
			var ans gateway.PcapAnswer
			if err := cl.do("POST", "/v1/pcap", gateway.PcapRequest{}, &ans); err != nil {
				return err
			}
			switch e := ans.Ended; {
			case e == nil:
				fmt.Fprintln(cmd.OutOrStdout(), "no recording was running")
			case e.Error != "":
				return errors.New(e.String()) // exit 1: the recording did not hold everything
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "recording stopped: %s\n", e)
			}
			return nil
		},
	}
	nameFlag(stop, &stopName)
	c.AddCommand(start, stop)
	return c
}
