package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/policy"
)

func newCtCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "ct",
		Short: "Look at and change the gateway's connection table (like conntrack -L/-G/-D/-U/-E/-F)",
		Long: `Look at and change the gateway's connection table with conntrack-tools' verbs and filters.

Filters (every one given must hold; addresses and ports are the original direction's,
the tuple of the packet that opened the connection):
  -p, --proto PROTO     tcp, udp, icmp, icmpv6 or a protocol number
  -s, --src ADDR        source address or prefix (198.18.0.2, 198.18.0.0/24)
  -d, --dst ADDR        destination address or prefix
      --sport PORT      source port (TCP and UDP)
      --dport PORT      destination port (TCP and UDP)
      --state STATES    TCP states, comma-separated (ESTABLISHED,TIME_WAIT)
      --status STATUS   ASSURED or UNREPLIED
      --nat[=false]     source-NATed connections only (or, =false, the others)
      --id ID           the connection of that id (ct list shows them)
  -e, --event TYPES     ct events only: NEW,UPDATE,DESTROY,VERDICT or ALL`,
		Example: `  sudo idlegate ct list -p tcp --dport 5432
  sudo idlegate ct get --id 7 -o yaml
  sudo idlegate ct expire -p tcp --dport 5432     # fast-forward their idle timeout
  sudo idlegate ct update --id 7 --timeout 30s
  sudo idlegate ct events --verdicts -p tcp
  sudo idlegate ct stats -o json`,
	}
	c.AddCommand(newCtListCmd(), newCtGetCmd(), newCtCountCmd(), newCtDeleteCmd(), newCtExpireCmd(), newCtUpdateCmd(),
		newCtEventsCmd(), newCtFlushCmd(), newCtStatsCmd())
	return c
}

// filterValue is one filter flag: it sets a field of a control.Filter by its key.
type filterValue struct {
	f           *control.Filter
	key, holder string
	set         []string
}

func (v *filterValue) String() string { return strings.Join(v.set, ",") }
func (v *filterValue) Type() string   { return v.holder }
func (v *filterValue) Set(s string) error {
	if err := v.f.Set(v.key, s); err != nil {
		return err
	}
	v.set = append(v.set, s)
	return nil
}

// filterFlags adds the conntrack-style filter flags that fill f; events adds -e.
func filterFlags(c *cobra.Command, f *control.Filter, events bool) {
	fl := c.Flags()
	add := func(key, short, holder, usage string) *pflag.Flag {
		return fl.VarPF(&filterValue{f: f, key: key, holder: holder}, key, short, usage)
	}
	add("proto", "p", "PROTO", "only this protocol: tcp, udp, icmp, icmpv6 or a number")
	add("src", "s", "ADDR", "only this original source address or prefix")
	add("dst", "d", "ADDR", "only this original destination address or prefix")
	add("sport", "", "PORT", "only this original source port (TCP, UDP)")
	add("dport", "", "PORT", "only this original destination port (TCP, UDP)")
	add("state", "", "STATES", "only these TCP states, comma-separated (ESTABLISHED,TIME_WAIT)")
	add("status", "", "STATUS", "only ASSURED or only UNREPLIED connections")
	add("nat", "", "bool", "only source-NATed connections (--nat=false: only the others)").NoOptDefVal = "true"
	add("id", "", "ID", "only the connection of this id")
	if events {
		add("event", "e", "TYPES", "event types, comma-separated: NEW,UPDATE,DESTROY,VERDICT or ALL (default NEW,UPDATE,DESTROY)")
	}
}

// checkFilter reports a contradictory filter, and, with need set, an empty one.
func checkFilter(f control.Filter, need string) error {
	if err := f.Check(); err != nil {
		return usageError{err}
	}
	if need != "" && f.IsZero() {
		return usagef("%s needs a filter, e.g. -p tcp --dport 5432 or --id 7; `idlegate ct flush` forgets every connection", need)
	}
	return nil
}

// conns lists what f picks, with the lab's time scale for printing.
func conns(cl *labClient, f control.Filter) ([]control.Conn, float64, error) {
	ctx, cancel := cl.ctx()
	defer cancel()
	rows, err := cl.Conns(ctx, f)
	if err != nil {
		return nil, 1, err
	}
	scale := 1.0
	if l, err := cl.Lab(ctx); err == nil {
		scale = l.Scale()
	}
	return rows, scale, nil
}

func newCtListCmd() *cobra.Command {
	var name, out string
	var f control.Filter
	var watch bool
	var interval time.Duration
	c := &cobra.Command{
		Use:   "list [FILTER]",
		Short: "List tracked connections: id, state, status, time left, both tuples",
		Long: `List the connections the filter picks (all without one), as conntrack -L does: id, protocol,
TCP state, ASSURED or UNREPLIED (or REPLIED: a UDP or ICMP flow answered, not yet assured),
the time left before the idle timeout fires (with the real value on a scaled lab), the
original and reply tuples (ICMP as type=8 code=0 id=N). -o wide
adds NAT, packet and byte counters each way, idle time and when the idle timer last
restarted. --watch lists again every --interval until Ctrl-C.`,
		Example: `  sudo idlegate ct list
  sudo idlegate ct list -p tcp --state ESTABLISHED -o wide
  sudo idlegate ct list --name pool -o json
  sudo idlegate ct list --dport 5432 --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputOf(out, "text", "wide", "json", "yaml"); err != nil {
				return err
			}
			if err := checkFilter(f, ""); err != nil {
				return err
			}
			if interval <= 0 {
				return usagef("--interval %v: give a positive duration such as 1s", interval)
			}
			cl, err := dialLab(name)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			list := func() error {
				rows, scale, err := conns(cl, f)
				if err != nil {
					return err
				}
				switch out {
				case "json", "yaml":
					return writeOut(w, out, rows)
				}
				printConns(w, rows, out == "wide", scale)
				return nil
			}
			if !watch {
				return list()
			}
			return watchEvery(cmd, interval, func(first bool) error {
				if out == "text" || out == "wide" {
					if tty(w) {
						fmt.Fprint(w, "\033[H\033[2J")
					} else if !first {
						fmt.Fprintln(w)
					}
					fmt.Fprintf(w, "%s  lab %s  every %v  %s\n", time.Now().Format("15:04:05"), name, interval, dash(f.String()))
				} else if out == "yaml" && !first {
					fmt.Fprintln(w, "---")
				}
				return list()
			})
		},
	}
	nameFlag(c, &name)
	outputFlagOf(c, &out, "text", "wide", "json", "yaml")
	filterFlags(c, &f, false)
	c.Flags().BoolVarP(&watch, "watch", "w", false, "list again every --interval until Ctrl-C")
	c.Flags().DurationVar(&interval, "interval", time.Second, "with --watch: how often, a `DURATION`")
	return c
}

// watchEvery calls fn at once and then every interval until SIGINT or SIGTERM (then
// it returns nil) or fn fails.
func watchEvery(cmd *cobra.Command, interval time.Duration, fn func(first bool) error) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		if err := fn(first); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tty reports whether w is a terminal.
func tty(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// printConns prints the table in conntrack -L's spirit, one connection a line.
func printConns(w io.Writer, rows []control.Conn, wide bool, scale float64) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "ID\tPROTO\tSTATE\tSTATUS\tLEFT\tORIGINAL\tREPLY"
	if scale != 1 {
		head = "ID\tPROTO\tSTATE\tSTATUS\tLEFT (REAL)\tORIGINAL\tREPLY"
	}
	if wide {
		head += "\tNAT\tPACKETS\tBYTES\tIDLE\tREFRESHED"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s", r.ID, r.Proto, dash(r.State), dash(r.Status()),
			seconds(r.TimeLeft, scale), r.Orig, r.Reply)
		if wide {
			fmt.Fprintf(tw, "\t%s\t%d/%d\t%d/%d\t%s\t%s", dash(r.NAT), r.Packets.Original, r.Packets.Reply,
				r.Bytes.Original, r.Bytes.Reply, seconds(r.Idle, 1), r.Refreshed.Local().Format("15:04:05.000"))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w, plural(len(rows), "connection"))
}

// seconds prints s seconds measured on a lab's clock, with the real time it stands
// for on a scaled lab: "3.5s (350s)".
func seconds(s, scale float64) string {
	d := time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond)
	if scale == 1 {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs (%s)", d.Seconds(), policy.FormatDuration(time.Duration(s/scale*float64(time.Second)).Round(time.Second)))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return strconv.Itoa(n) + " " + what + "es"
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newCtGetCmd() *cobra.Command {
	var name, out string
	var f control.Filter
	c := &cobra.Command{
		Use:   "get FILTER",
		Short: "Show the one connection the filter picks (an error if none or several)",
		Long: `Show the one connection the filter picks, in full, as conntrack -G does. No match is a
failure (exit 1); several are a usage error (exit 2): narrow the filter, e.g. with --id.`,
		Example: `  sudo idlegate ct get --id 7
  sudo idlegate ct get -p tcp --sport 40000 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputOf(out, "text", "json", "yaml"); err != nil {
				return err
			}
			if err := checkFilter(f, "ct get"); err != nil {
				return err
			}
			cl, err := dialLab(name)
			if err != nil {
				return err
			}
			rows, scale, err := conns(cl, f)
			if err != nil {
				return err
			}
			switch len(rows) {
			case 0:
				return fmt.Errorf("no connection matches %s", f)
			case 1:
			default:
				ids := make([]string, len(rows))
				for i, r := range rows {
					ids[i] = strconv.FormatUint(r.ID, 10)
				}
				return usagef("%d connections match %s (ids %s): narrow the filter, e.g. with --id", len(rows), f, strings.Join(ids, ", "))
			}
			w := cmd.OutOrStdout()
			if out != "text" {
				return writeOut(w, out, rows[0])
			}
			printConn(w, rows[0], scale)
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlagOf(c, &out, "text", "json", "yaml")
	filterFlags(c, &f, false)
	return c
}

// printConn prints one connection, a field a line.
func printConn(w io.Writer, r control.Conn, scale float64) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%d\n", r.ID)
	fmt.Fprintf(tw, "proto\t%s\n", r.Proto)
	if r.State != "" {
		fmt.Fprintf(tw, "state\t%s\n", r.State)
	}
	fmt.Fprintf(tw, "status\t%s\n", dash(r.Status()))
	fmt.Fprintf(tw, "original\t%s\n", r.Orig)
	fmt.Fprintf(tw, "reply\t%s\n", r.Reply)
	fmt.Fprintf(tw, "nat\t%s\n", dash(r.NAT))
	fmt.Fprintf(tw, "time left\t%s of %s\n", seconds(r.TimeLeft, scale), seconds(r.Timeout, scale))
	fmt.Fprintf(tw, "idle\t%s\n", seconds(r.Idle, 1))
	fmt.Fprintf(tw, "packets\t%d original, %d reply\n", r.Packets.Original, r.Packets.Reply)
	fmt.Fprintf(tw, "bytes\t%d original, %d reply\n", r.Bytes.Original, r.Bytes.Reply)
	fmt.Fprintf(tw, "created\t%s\n", r.Created.Local().Format("2006-01-02 15:04:05.000"))
	fmt.Fprintf(tw, "refreshed\t%s\n", r.Refreshed.Local().Format("2006-01-02 15:04:05.000"))
	tw.Flush()
}

func newCtCountCmd() *cobra.Command {
	var name, out string
	var f control.Filter
	c := &cobra.Command{
		Use:     "count [FILTER]",
		Short:   "Count the connections the filter picks (all without one)",
		Example: "  sudo idlegate ct count\n  sudo idlegate ct count -p udp --status UNREPLIED",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := checkFilter(f, ""); err != nil {
				return err
			}
			n, err := ask(name, func(ctx context.Context, cl *labClient) (int, error) { return cl.Count(ctx, f) })
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSONOut(cmd.OutOrStdout(), map[string]int{"count": n})
			}
			fmt.Fprintln(cmd.OutOrStdout(), n)
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	filterFlags(c, &f, false)
	return c
}

// change is what a verb did: how many connections (JSON key done), and the line
// that says so.
type change struct {
	done string
	n    int
	line string
}

// changeCmd is a verb that changes the connections a filter picks and prints how many.
func changeCmd(use, short, long, example string, run func(cl *labClient, ctx context.Context, f control.Filter, cmd *cobra.Command) (change, error)) *cobra.Command {
	var name, out string
	f := new(control.Filter)
	c := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := checkFilter(*f, "ct "+cmd.Name()); err != nil {
				return err
			}
			cl, err := dialLab(name)
			if err != nil {
				return err
			}
			ctx, cancel := cl.ctx()
			defer cancel()
			ch, err := run(cl, ctx, *f, cmd)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{ch.done: ch.n, "filter": f.String()})
			}
			fmt.Fprintln(cmd.OutOrStdout(), ch.line)
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	filterFlags(c, f, false)
	return c
}

func newCtDeleteCmd() *cobra.Command {
	return changeCmd("delete FILTER", "Forget the connections the filter picks now, as conntrack -D: their next packet is an orphan",
		`Forget the connections the filter picks now, as conntrack -D does: each is destroyed
(DESTROY reason deleted) and its NAT mapping released, so its next packet meets no entry and
gets the orphan policy (drop, RST, ICMP or pickup). No RST is sent now. A filter is required:
`+"`idlegate ct flush`"+` forgets everything.`,
		"  sudo idlegate ct delete --id 7\n  sudo idlegate ct delete -p tcp --dport 5432",
		func(cl *labClient, ctx context.Context, f control.Filter, _ *cobra.Command) (change, error) {
			n, err := cl.Delete(ctx, f)
			return change{"deleted", n, fmt.Sprintf("deleted %s (%s)", plural(n, "connection"), f)}, err
		})
}

func newCtExpireCmd() *cobra.Command {
	return changeCmd("expire FILTER", "Expire the connections the filter picks now, exactly as their idle timeout would",
		`Expire the connections the filter picks now, exactly as their idle timeout would: DESTROY
reason expired (closed in TIME_WAIT and CLOSE), and with reset_on_expire the same RSTs to both
ends. A way to fast-forward one flow without waiting. A filter is required.`,
		"  sudo idlegate ct expire --id 7\n  sudo idlegate ct expire -p tcp --dport 5432 --state ESTABLISHED",
		func(cl *labClient, ctx context.Context, f control.Filter, _ *cobra.Command) (change, error) {
			n, err := cl.Expire(ctx, f)
			return change{"expired", n, fmt.Sprintf("expired %s (%s)", plural(n, "connection"), f)}, err
		})
}

func newCtUpdateCmd() *cobra.Command {
	var timeout string
	c := changeCmd("update FILTER --timeout D", "Set the time left of the connections the filter picks, as conntrack -U --timeout",
		`Set how long the connections the filter picks have left before their idle timeout fires,
as conntrack -U --timeout does; they then end as an idle timeout ends them. The next packet
that refreshes one restarts its normal timeout. D is a duration (30s, 5m, 2d) or a number of
seconds; on a scaled lab it is in real units and runs scaled, as policy set takes it.`,
		"  sudo idlegate ct update --id 7 --timeout 30s\n  sudo idlegate ct update -p tcp --dport 5432 --timeout 300",
		func(cl *labClient, ctx context.Context, f control.Filter, cmd *cobra.Command) (change, error) {
			d, err := parseTimeout(timeout)
			if err != nil {
				return change{}, err
			}
			scale := 1.0
			if l, err := cl.Lab(ctx); err == nil {
				scale = l.Scale()
			}
			n, err := cl.SetTimeout(ctx, f, scaled(d, scale))
			return change{"updated", n, fmt.Sprintf("updated %s (%s): %s left", plural(n, "connection"), f, policy.FormatScaled(d, scale))}, err
		})
	c.Flags().StringVar(&timeout, "timeout", "", "the time left, a `DURATION` (30s, 5m) or seconds")
	c.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if !cmd.Flags().Changed("timeout") {
			return usagef("ct update needs --timeout D, e.g. --timeout 30s")
		}
		_, err := parseTimeout(timeout)
		return err
	}
	return c
}

// scaled is d as it runs on a lab at scale, without the policy's millisecond floor.
func scaled(d time.Duration, scale float64) time.Duration {
	if scale == 1 {
		return d
	}
	return time.Duration(float64(d) * scale)
}

// parseTimeout reads conntrack's --timeout: seconds, or a duration with its unit.
func parseTimeout(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := policy.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usagef("--timeout %q: give seconds or a duration such as 30s or 5m", s)
	}
	return time.Duration(d), nil
}

func newCtFlushCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:     "flush",
		Short:   "Forget every connection and NAT mapping, as a middlebox reboot does",
		Example: "  sudo idlegate ct flush",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			n, err := ask(name, func(ctx context.Context, cl *labClient) (int, error) { return cl.Flush(ctx) })
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSONOut(cmd.OutOrStdout(), map[string]int{"flushed": n})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "flushed %s\n", plural(n, "connection"))
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	return c
}

func newCtStatsCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:   "stats",
		Short: "Print the gateway's counters: verdicts, reasons, table, destroy reasons, devices",
		Long: `Print every counter since the gateway started: packets by verdict and by reason, the table
(created, destroyed by reason, full, keepalive probes), bytes by side and verdict, and the
devices. -o json keys every counter by name (snake_case), never by position.`,
		Example: "  sudo idlegate ct stats\n  sudo idlegate ct stats -o json | jq .table.destroyed",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputOf(out, "text", "json", "yaml"); err != nil {
				return err
			}
			st, err := ask(name, func(ctx context.Context, cl *labClient) (control.Stats, error) { return cl.Stats(ctx) })
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "text" {
				return writeOut(w, out, st)
			}
			printStats(w, st)
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlagOf(c, &out, "text", "json", "yaml")
	return c
}

func printStats(w io.Writer, st control.Stats) {
	fmt.Fprintf(w, "uptime %.0fs, %d of %d connections, %d NAT mappings, %d packets injected\n",
		st.Uptime, st.Entries, st.Capacity, st.NATMaps, st.Injected)
	fmt.Fprintf(w, "verdicts: %s\n", countsLine(st.Verdicts))
	fmt.Fprintf(w, "reasons:  %s\n", countsLine(st.Reasons))
	t := st.Table
	fmt.Fprintf(w, "table:    created=%d full=%d invalid=%d clash=%d keepalive_probes=%d\n", t.Created, t.Full, t.Invalid, t.Clash, t.KeepaliveProbes)
	fmt.Fprintf(w, "          destroyed %s\n", countsLine(t.Destroyed))
	fmt.Fprintf(w, "bytes:    inside %s; outside %s\n", countsLine(st.Bytes["inside"]), countsLine(st.Bytes["outside"]))
	fmt.Fprintf(w, "inside:   rx %d pkts, tx %d pkts; outside: rx %d pkts, tx %d pkts\n",
		st.Inside.RxPackets, st.Inside.TxPackets, st.Outside.RxPackets, st.Outside.TxPackets)
	if st.EventsDropped > 0 {
		fmt.Fprintf(w, "events:   %d lost by slow readers\n", st.EventsDropped)
	}
	if st.Pcap != "" {
		fmt.Fprintf(w, "pcap:     recording to %s\n", st.Pcap)
	}
	if st.PcapFailed != nil {
		fmt.Fprintf(w, "pcap:     %s\n", st.PcapFailed)
	}
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

func newCtEventsCmd() *cobra.Command {
	var name, out string
	var f control.Filter
	var verdicts bool
	c := &cobra.Command{
		Use:   "events [FILTER]",
		Short: "Follow connection events (NEW, UPDATE, DESTROY with reason) until Ctrl-C",
		Long: `Follow the events of the connections the filter picks, as conntrack -E does: NEW, UPDATE
and DESTROY (with its reason: expired after idle D, evicted, closed, flushed, deleted), and
with --verdicts (or -e VERDICT) one VERDICT per packet, for this reader alone. Each line
starts with the wall-clock time and the time since the gateway started.

The gateway never waits for a slow reader: events that do not fit its buffer are lost,
and a LOST line says how many. When the gateway stops, the command says so and exits 4;
Ctrl-C ends it with 0.`,
		Example: `  sudo idlegate ct events
  sudo idlegate ct events -p tcp --dport 5432 -e NEW,DESTROY
  sudo idlegate ct events --verdicts -o json | jq .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := checkFilter(f, ""); err != nil {
				return err
			}
			if verdicts {
				if len(f.Events) == 0 {
					f.Set("event", "NEW,UPDATE,DESTROY")
				}
				f.Set("event", "VERDICT")
			}
			cl, err := dialLab(name)
			if err != nil {
				return err
			}
			return followEvents(cmd.Context(), cl, f, cmd.OutOrStdout(), out == "json")
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	filterFlags(c, &f, true)
	c.Flags().BoolVar(&verdicts, "verdicts", false, "also one VERDICT event per packet (same as adding -e VERDICT)")
	return c
}

// signalGrace is how long a signalled `ct events` waits for its loop to end (it may
// be blocked writing to a stdout nobody reads) before it exits anyway.
const signalGrace = 500 * time.Millisecond

// followEvents prints the events f picks until SIGINT or SIGTERM (nil) or the
// gateway goes away (an error saying so). It exits on a signal even when a write to
// w blocks.
func followEvents(ctx context.Context, cl *labClient, f control.Filter, w io.Writer, raw bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, err := cl.Events(ctx, f)
	if err != nil {
		return err
	}
	defer evs.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan error, 1)
	go func() {
		for {
			ev, err := evs.Next()
			if err != nil {
				done <- err
				return
			}
			if raw {
				_, err = fmt.Fprintf(w, "%s\n", evs.Raw())
			} else {
				_, err = fmt.Fprintln(w, formatEvent(ev))
			}
			if err != nil {
				done <- fmt.Errorf("write events: %w", err)
				return
			}
		}
	}()
	select {
	case err := <-done:
		if ctx.Err() != nil {
			return nil
		}
		return err
	case <-sig:
		cancel()
		evs.Close()
		select {
		case <-done:
		case <-time.After(signalGrace):
			// The loop is stuck writing to w (a stalled pipe): leave without it.
		}
		return nil
	}
}

// formatEvent prints one event as conntrack -E -o timestamp does, plus the time
// since the gateway started and idlegate's reasons.
func formatEvent(ev control.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %9s %-9s", ev.Time.Local().Format("15:04:05.000000"), fmt.Sprintf("+%.3fs", ev.T), "["+ev.Type+"]")
	if ev.Type == control.EventLost {
		fmt.Fprintf(&b, " %s lost: this reader fell behind and the gateway dropped them", plural(int(ev.Lost), "event"))
		return b.String()
	}
	if ev.Side != "" { // GONE, ATTACH: a wedge's side, in the gateway's sentence
		if ev.Message == "" {
			ev.Message = fmt.Sprintf("side %s (%s)", ev.Side, ev.Target)
		}
		b.WriteString(" " + ev.Message)
		return b.String()
	}
	if ev.Proto != "" {
		fmt.Fprintf(&b, " %-4s", ev.Proto)
	}
	switch {
	case ev.OldState != "":
		fmt.Fprintf(&b, " %s->%s", ev.OldState, ev.State)
	case ev.State != "":
		fmt.Fprintf(&b, " %s", ev.State)
	}
	if ev.Orig != nil {
		fmt.Fprintf(&b, " %s", ev.Orig)
	}
	if ev.NAT != "" {
		fmt.Fprintf(&b, " nat %s", ev.NAT)
	}
	if ev.ID != 0 {
		fmt.Fprintf(&b, " id=%d", ev.ID)
	}
	switch {
	case ev.Type == "VERDICT":
		keepalive := ""
		if ev.Keepalive {
			keepalive = " keepalive"
		}
		fmt.Fprintf(&b, " verdict=%s (%s %s%s)", ev.Verdict, ev.Dir, ev.Reason, keepalive)
		return b.String()
	case ev.Assured:
		b.WriteString(" [ASSURED]")
	case ev.Unreplied:
		b.WriteString(" [UNREPLIED]")
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", ev.Reason)
		if ev.Reason == "expired" || ev.Reason == "closed" {
			fmt.Fprintf(&b, " idle=%.1fs timeout=%.1fs", ev.Idle, ev.Timeout)
		}
	}
	return b.String()
}
