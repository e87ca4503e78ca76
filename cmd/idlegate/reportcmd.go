package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/report"
)

type reportOpts struct {
	name    string
	html    string
	profile string
	config  string
	sets    []string
	scale   float64
	watch   time.Duration
}

func newReportCmd() *cobra.Command {
	var o reportOpts
	c := &cobra.Command{
		Use:   "report [CAPTURE.pcapng] [--name LAB] --html FILE",
		Short: "Draw a capture or a running lab as one self-contained HTML page",
		Long: `Write one HTML file (inline SVG and CSS, nothing fetched) that draws what the gateway saw:
a sequence diagram client | idlegate | server with every packet an arrow (keepalive probes
marked, packets the gateway did not forward ending at it with their verdict and reason, the
RSTs and ICMP errors it sent starting there, NAT rewrites written on the arrow), each
connection's idle timer against the timeout in force (filling while it idles, emptying on
refresh, the deadline, the moment it died, its states as colours), and the table's occupancy
against its capacity.

From a capture the gateway recorded (lab up --pcap, pcap start, scenario run --pcap): the
arrows are the capture's own records; the timers come from replaying them through the
gateway's policy, which the capture does not hold: give it with --profile, --config and
--set as for lab up (Linux's defaults otherwise). From a running lab (--name, no capture):
its table, counters and the events of the next --watch seconds.

The same pictures come with scenario run NAME --html FILE and replay CAP --profile A,B
--html FILE (one column per profile).`,
		Example: `  idlegate report run.pcapng --set timeouts.tcp.established=5s --set orphan=reset --html run.html
  sudo idlegate report --name idlegate --watch 10s --html lab.html
  sudo idlegate scenario run idle-reset --html idle-reset.html
  idlegate replay app.pcap --profile linux-conntrack,aws-nat-gateway --html app.html`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one capture file (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			lab := cmd.Flags().Changed("name")
			switch {
			case len(args) == 1 && lab:
				return usagef("give a capture file or --name LAB, not both")
			case len(args) == 0 && !lab:
				return usagef("give a capture the gateway recorded (idlegate report run.pcapng --html run.html) or a running lab (--name LAB)")
			}
			if o.html == "" {
				return usagef("--html FILE: where to write the report (- for stdout)")
			}
			if len(args) == 1 {
				if cmd.Flags().Changed("watch") {
					return usagef("--watch is for a running lab (--name), not a capture")
				}
				return reportCapture(cmd.OutOrStdout(), args[0], o)
			}
			return reportLive(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	c.Flags().StringVar(&o.name, "name", "", "a running lab `NAME` to draw instead of a capture")
	c.Flags().StringVar(&o.html, "html", "", "write the report to this `FILE` (- for stdout)")
	c.Flags().StringVar(&o.profile, "profile", "", "the gateway's policy started from the built-in profile `NAME` (capture)")
	c.Flags().StringVar(&o.config, "config", "", "the gateway's policy `FILE` (capture)")
	c.Flags().StringArrayVar(&o.sets, "set", nil, "`KEY=VALUE` of the gateway's policy, repeatable (capture)")
	c.Flags().DurationVar(&o.watch, "watch", 3*time.Second, "with --name: how long to collect events before drawing, a `DURATION`")
	scaleFlag(c, &o.scale)
	return c
}

func reportCapture(w io.Writer, path string, o reportOpts) error {
	if err := checkScale(o.scale); err != nil {
		return err
	}
	pol, err := loadPolicyFrom(o.profile, o.config, o.sets)
	if err != nil {
		return err
	}
	if pol, err = pol.Scale(o.scale); err != nil {
		return usagef("--time-scale: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return usagef("cannot open capture %s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	name := "Linux defaults"
	var parts []string
	if o.profile != "" {
		parts = append(parts, "profile "+o.profile)
	}
	if o.config != "" {
		parts = append(parts, o.config)
	}
	parts = append(parts, o.sets...)
	if o.scale != 1 {
		parts = append(parts, fmt.Sprintf("timeouts x%g", o.scale))
	}
	if len(parts) > 0 {
		name = strings.Join(parts, ", ")
	}
	rep, err := report.FromCapture(path, bufio.NewReaderSize(f, 1<<20), report.CaptureOptions{
		Policy: pol, PolicyName: "the gateway's policy as given: " + name, Subtitle: "capture " + path,
	})
	if err != nil {
		if errors.Is(err, report.ErrNotIdlegate) {
			return usageError{err}
		}
		return err
	}
	return writeReport(w, w, o.html, rep)
}

// labControl is what `idlegate report --name LAB` asks of a lab's control API,
// so that a test can answer it without a lab.
type labControl interface {
	Conntrack() ([]control.Conn, error)
	Stats() (control.Stats, error)
	Policy() (policy.Policy, error)
	// Events streams the lab's events, verdicts included, to each until ctx ends.
	Events(ctx context.Context, each func(control.Event)) error
}

// clientControl is labControl over the control package's client.
type clientControl struct{ c *labClient }

func (c clientControl) Conntrack() ([]control.Conn, error) {
	ctx, cancel := c.c.ctx()
	defer cancel()
	return c.c.Conns(ctx, control.Filter{})
}

func (c clientControl) Stats() (control.Stats, error) {
	ctx, cancel := c.c.ctx()
	defer cancel()
	return c.c.Client.Stats(ctx)
}

func (c clientControl) Policy() (policy.Policy, error) {
	ctx, cancel := c.c.ctx()
	defer cancel()
	return c.c.Client.Policy(ctx)
}

func (c clientControl) Events(ctx context.Context, each func(control.Event)) error {
	all := control.Filter{Events: []conntrack.EventType{conntrack.EventNew, conntrack.EventUpdate, conntrack.EventDestroy, conntrack.EventVerdict}}
	evs, err := c.c.Client.Events(ctx, all)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		evs.Close()
	}()
	for {
		ev, err := evs.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("lab %s's event stream: %w", c.c.name, err)
		}
		each(ev)
	}
}

func reportLive(ctx context.Context, w io.Writer, o reportOpts) error {
	if o.profile != "" || o.config != "" || len(o.sets) > 0 || o.scale != 1 {
		return usagef("--profile, --config, --set and --time-scale describe a capture's gateway; a running lab has its own policy")
	}
	if o.watch <= 0 {
		return usagef("--watch %s: give a positive duration, e.g. 5s", o.watch)
	}
	cl, err := dialLab(o.name)
	if err != nil {
		return err
	}
	snap, err := snapshotLab(ctx, clientControl{cl}, o.name, o.watch)
	if err != nil {
		return err
	}
	return writeReport(w, w, o.html, report.FromLive(snap))
}

// snapshotLab collects a lab's events for watch (Ctrl-C ends it early), then reads
// its policy, table and counters.
func snapshotLab(ctx context.Context, lc labControl, name string, watch time.Duration) (report.LiveSnapshot, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	snap := report.LiveSnapshot{Lab: name, Since: time.Now()}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, watch)
	defer cancel()
	if err := lc.Events(ctx, func(ev control.Event) { snap.Events = append(snap.Events, ev) }); err != nil {
		return snap, err
	}
	var err error
	if snap.Policy, err = lc.Policy(); err != nil {
		return snap, err
	}
	if snap.Conns, err = lc.Conntrack(); err != nil {
		return snap, err
	}
	if snap.Stats, err = lc.Stats(); err != nil {
		return snap, err
	}
	snap.Taken = time.Now()
	return snap, nil
}

// writeReport writes rep's HTML to path ("-": w), whole or not at all: into a
// temporary file beside path, renamed over it once complete; then says so on msg.
func writeReport(w, msg io.Writer, path string, rep *report.Report) error {
	if path == "-" {
		return rep.WriteHTML(w)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	err = rep.WriteHTML(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write the report %s: %w", path, err)
	}
	st, _ := os.Stat(path)
	size := int64(0)
	if st != nil {
		size = st.Size()
	}
	fmt.Fprintf(msg, "wrote %s (%s): open it in a browser\n", path, humanSize(size))
	return nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
