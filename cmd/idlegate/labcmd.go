package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// readyFDEnv tells a detached `lab up` child which fd reports readiness to its parent.
const readyFDEnv = "IDLEGATE_READY_FD"

func newLabCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "lab",
		Short: "Build, inspect and remove the two-namespace lab",
		Long: `A lab is two network namespaces, NAME-client (inside, 198.18.0.2, fd00:18::2) and
NAME-server (outside, 198.19.0.2, fd00:19::2), each with one TUN link gw0 whose other end
the gateway holds. The only path between them is through the gateway.`,
		Example: `  sudo idlegate lab up --detach
  sudo idlegate lab show
  sudo idlegate lab exec client -- ping -c1 198.19.0.2
  sudo idlegate lab down`,
	}
	c.AddCommand(newLabUpCmd(), newLabDownCmd(), newLabShowCmd(), newLabListCmd(), newLabExecCmd())
	return c
}

type labUpOpts struct {
	name, config, pcap string
	profile, metrics   string
	scale              float64
	mtu                int
	detach, force      bool
	quiet              bool
	sets               []string
}

func newLabUpCmd() *cobra.Command {
	var o labUpOpts
	c := &cobra.Command{
		Use:   "up",
		Short: "Create the lab and run its gateway",
		Long: `Create NAME-client and NAME-server and run the gateway between them with the policy:
unless --profile, --config or --set say otherwise, a Linux stateful firewall (nf_conntrack's
timeouts and state machine; orphans and invalid packets dropped, where the kernel with no
ruleset picks them up or passes them: --profile linux-conntrack is that). The summary says
where the policy differs from the kernel. Without --detach the gateway runs in the
foreground until Ctrl-C and prints the event stream (NEW, UPDATE, DESTROY, as ct events
does) unless --quiet; with it, in the background, with its pid file, log and control socket
in /run/idlegate/NAME. Leftovers of a killed gateway of the same name are removed first.

--metrics ADDR also serves GET /metrics (only that) over TCP, for a stock Prometheus; the
control API stays on its root-only unix socket. The gateway's log records every change made
through the API, with who made it.`,
		Example: `  sudo idlegate lab up
  sudo idlegate lab up --profile aws-nat-gateway --time-scale 0.01 --detach
  sudo idlegate lab up --name pool --config aws-nat.yaml --detach
  sudo idlegate lab up --set timeouts.tcp.established=5s --set orphan=reset --pcap /tmp/run.pcapng
  sudo idlegate lab up --detach --metrics 127.0.0.1:9477`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return labUp(cmd, o) },
	}
	nameFlag(c, &o.name)
	c.Flags().StringVar(&o.profile, "profile", "", "start from the built-in middlebox profile `NAME` (idlegate profiles lists them)")
	c.Flags().StringVar(&o.config, "config", "", "policy YAML `FILE` (over --profile, if both)")
	scaleFlag(c, &o.scale)
	c.Flags().StringArrayVar(&o.sets, "set", nil, "override one policy key, `KEY=VALUE` (repeatable)")
	c.Flags().StringVar(&o.pcap, "pcap", "", "record what crosses the gateway to this new pcapng `FILE` (mode 0600)")
	c.Flags().BoolVar(&o.force, "force", false, "with --pcap: overwrite the file if it exists")
	c.Flags().StringVar(&o.metrics, "metrics", "", "also serve GET /metrics over TCP at `ADDR`, e.g. 127.0.0.1:9477")
	c.Flags().IntVar(&o.mtu, "mtu", lab.DefaultMTU, "`MTU` of both TUN links")
	c.Flags().BoolVar(&o.detach, "detach", false, "run the gateway in the background")
	c.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "in the foreground, do not print the event stream")
	return c
}

func labUp(cmd *cobra.Command, o labUpOpts) error {
	if err := lab.CheckName(o.name); err != nil {
		return usageError{err}
	}
	if err := checkScale(o.scale); err != nil {
		return err
	}
	if o.metrics != "" {
		if _, _, err := net.SplitHostPort(o.metrics); err != nil {
			return usagef("--metrics %q: give HOST:PORT, e.g. 127.0.0.1:9477", o.metrics)
		}
	}
	if o.mtu < 1280 || o.mtu > 65535 {
		return usagef("--mtu %d: pick an MTU from 1280 (the IPv6 minimum) to 65535", o.mtu)
	}
	realPol, err := loadPolicyFrom(o.profile, o.config, o.sets)
	if err != nil {
		return err
	}
	if _, err := realPol.Scale(o.scale); err != nil {
		return usageError{err}
	}
	if o.detach {
		return labUpDetached(cmd, o, realPol)
	}
	ready := readyPipe()
	fail := func(err error) error {
		if ready != nil {
			fmt.Fprintf(ready, "error %d %s\n", exitCode(err), err)
			ready.Close()
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var logFile *os.File
	if ready != nil {
		signal.Ignore(syscall.SIGHUP)
	}
	run, err := gateway.StartLab(ctx, lab.Config{Name: o.name, MTU: o.mtu}, realPol, gateway.LabOptions{
		Pcap: absPath(o.pcap), PcapForce: o.force, PolicyFile: absPath(o.config), Log: log,
		Profile: strings.TrimSpace(o.profile), TimeScale: o.scale, Metrics: o.metrics,
	})
	if err != nil {
		return fail(err)
	}
	if ready != nil {
		// Detached: from here on, everything goes to the log in the run directory.
		if logFile, err = os.OpenFile(filepath.Join(run.Lab.RunDir, gateway.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			defer logFile.Close()
			log = slog.New(slog.NewTextHandler(logFile, nil))
			os.Stdout, os.Stderr = logFile, logFile
		}
		fmt.Fprintln(ready, "ready")
		ready.Close()
	} else {
		printLabSummary(cmd.OutOrStdout(), run.Lab.Name, run.Lab.RunDir, realPol, o.scale, run.Metrics)
		fmt.Fprintln(cmd.OutOrStdout(), "gateway running; Ctrl-C stops it and removes the lab")
		if !o.quiet {
			stopEvents := printEngineEvents(cmd.OutOrStdout(), run)
			defer stopEvents()
		}
	}
	log.Info("gateway running", "lab", run.Lab.Name, "pid", os.Getpid())
	select {
	case <-ctx.Done():
		log.Info("stopping", "lab", run.Lab.Name)
	case <-run.Done():
		if err := run.Err(); err != nil {
			log.Error("gateway stopped", "err", err)
		}
	}
	return run.Stop() // with why the gateway stopped, if it failed
}

// printEngineEvents prints the lab's events to w, as ct events does, until the
// returned function is called; a LOST line says how many this printer lost.
func printEngineEvents(w io.Writer, run *gateway.Running) (stop func()) {
	sub := run.Engine.SubscribeWith(policy.SubscribeOptions{Buffer: 4096})
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := run.Gateway.Started()
		var reported uint64
		for ev := range sub.C {
			if d := sub.Dropped(); d > reported {
				fmt.Fprintln(w, formatEvent(control.Event{Time: ev.Time, T: ev.Time.Sub(start).Seconds(), Type: control.EventLost, Lost: d - reported}))
				reported = d
			}
			fmt.Fprintln(w, formatEvent(control.EventOf(&ev, start)))
		}
	}()
	return func() {
		sub.Close()
		select {
		case <-done:
		case <-time.After(signalGrace): // stdout blocked: leave without it
		}
	}
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// readyPipe is the write end a detached child reports readiness on, or nil.
func readyPipe() *os.File {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	return os.NewFile(uintptr(fd), "ready")
}

// labUpDetached starts `idlegate lab up` in its own session and waits until its gateway
// is ready or it fails. pol is the policy the flags gave, with real (unscaled) timeouts.
func labUpDetached(cmd *cobra.Command, o labUpOpts, pol policy.Policy) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	child := exec.Command(exe, detachedArgs(cmd)...)
	child.Env = append(os.Environ(), readyFDEnv+"=3")
	child.ExtraFiles = []*os.File{w}
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start background gateway: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		pid := child.Process.Pid // Release forgets it
		child.Process.Release()
		metrics := ""
		if st, err := gateway.ReadState(o.name, ""); err == nil {
			metrics = st.Metrics
		}
		printLabSummary(cmd.OutOrStdout(), o.name, lab.RunDir(o.name, ""), pol, o.scale, metrics)
		fmt.Fprintf(cmd.OutOrStdout(), "gateway running in the background (pid %d); stop it with `idlegate lab down --name %s`\n", pid, o.name)
		return nil
	case strings.HasPrefix(line, "error "):
		child.Wait()
		code, msg, _ := strings.Cut(strings.TrimPrefix(line, "error "), " ")
		return detachedError{msg: msg, code: atoiOr(code, exitFailure)}
	default:
		child.Wait()
		return fmt.Errorf("the background gateway exited before it was ready; run without --detach to see why")
	}
}

// detachedArgs are the arguments of the detached child of `lab up`: every flag the
// user set but --detach, file paths made absolute (the child runs elsewhere).
func detachedArgs(cmd *cobra.Command) []string {
	return append([]string{"lab", "up"}, flagArgs(cmd)...)
}

// flagArgs are the flags the user set on cmd but --detach, as --NAME=VALUE, file
// paths made absolute (a detached child runs elsewhere).
func flagArgs(cmd *cobra.Command) []string {
	var args []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "detach", "quiet":
		case "config", "pcap":
			args = append(args, "--"+f.Name+"="+absPath(f.Value.String()))
		default:
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				for _, v := range sv.GetSlice() {
					args = append(args, "--"+f.Name+"="+v)
				}
				return
			}
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

// detachedError carries the exit code the detached child chose.
type detachedError struct {
	msg  string
	code int
}

func (e detachedError) Error() string { return e.msg }

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// printLabSummary prints the lab's addresses and policy; pol has real (unscaled)
// timeouts and scale is the --time-scale the gateway runs them at.
func printLabSummary(w io.Writer, name, runDir string, pol policy.Policy, scale float64, metrics string) {
	fmt.Fprintf(w, "lab %q is up\n", name)
	fmt.Fprintf(w, "  client  netns %-20s gw0 %s  %s\n", lab.ClientNamespace(name), lab.ClientAddr4, lab.ClientAddr6)
	fmt.Fprintf(w, "  server  netns %-20s gw0 %s  %s\n", lab.ServerNamespace(name), lab.ServerAddr4, lab.ServerAddr6)
	if pol.NAT.Enabled {
		fmt.Fprintf(w, "  NAT     outside %v\n", pol.NAT.Outside)
	}
	fmt.Fprintf(w, "  policy  tcp established %s, orphan %s, capacity %d (%s), refresh %s\n",
		policy.FormatScaled(time.Duration(pol.Timeouts.TCP.Established), scale), pol.Orphan, pol.Capacity, pol.OnFull, pol.Refresh)
	if scale != 1 {
		fmt.Fprintf(w, "  time scale %g: every timeout runs scaled (udp %s, udp_stream %s)\n", scale,
			policy.FormatScaled(time.Duration(pol.Timeouts.UDP), scale), policy.FormatScaled(time.Duration(pol.Timeouts.UDPStream), scale))
	}
	printKernelDifferences(w, pol)
	fmt.Fprintf(w, "  run dir %s\n", runDir)
	if metrics != "" {
		fmt.Fprintf(w, "  metrics http://%s/metrics\n", metrics)
	}
	fmt.Fprintf(w, "  try: idlegate lab exec --name %s client -- ping -c1 %s\n", name, lab.ServerAddr4)
}

// printKernelDifferences says where pol is not what Linux's nf_conntrack does with no
// ruleset, and why when it is idlegate's default: the default models a stateful
// firewall, and --profile linux-conntrack gives the kernel's own behaviour.
func printKernelDifferences(w io.Writer, pol policy.Policy) {
	d := pol.KernelDifferences()
	if len(d) == 0 {
		fmt.Fprintln(w, "  vs Linux behaves as nf_conntrack with no ruleset (the linux-conntrack profile)")
		return
	}
	fmt.Fprintln(w, "  vs Linux differs from nf_conntrack with no ruleset (--profile linux-conntrack) in:")
	const show = 4
	for i, x := range d {
		if i == show {
			fmt.Fprintf(w, "           and %d more keys (idlegate profiles show linux-conntrack)\n", len(d)-show)
			break
		}
		line := fmt.Sprintf("           %s %s (kernel %s)", x.Key, x.Value, x.Kernel)
		if x.Why != "" {
			line += ": " + x.Why
		}
		fmt.Fprintln(w, line)
	}
}

func newLabDownCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "down",
		Short: "End the lab's processes, stop its gateway, remove its namespaces and run directory",
		Long: `End the processes ` + "`lab exec`" + ` started in lab NAME, stop its gateway (SIGTERM, then SIGKILL after
5 s) and remove its namespaces, links and run directory, including leftovers of a gateway
that was killed.

The processes lab exec started are found by their cgroup (idlegate/NAME in the unified
cgroup hierarchy, which every process they fork stays in, daemons included) or, on a
machine without a writable one, by process (their pid and start time, and their
descendants). Each gets SIGTERM, then SIGKILL a second later.`,
		Example: "  sudo idlegate lab down\n  sudo idlegate lab down --name pool",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckName(name); err != nil {
				return usageError{err}
			}
			if lab.IsWedge(lab.RunDir(name, "")) {
				return wedgeDown(cmd, name)
			}
			if err := lab.CheckHost(); err != nil {
				return err
			}
			// Mounts of the lab's namespaces hidden under a later `ip netns add`
			// self-bind of /run/netns go first, so that the gateway's own teardown
			// and Cleanup see an ordinary lab. If they cannot be reached, Cleanup
			// meets them again and its error says what to do.
			note, _ := lab.RecoverHidden(lab.ClientNamespace(name), lab.ServerNamespace(name))
			ended, how, perr := lab.EndProcesses(name, "")
			stopped := false
			if pid, ok := lab.Owner(name, ""); ok && pid != os.Getpid() {
				stopped = stopProcess(pid)
			}
			// A gateway stopped by SIGTERM removes its own lab: nothing is left.
			if err := lab.Cleanup(name, ""); err != nil && !(errors.Is(err, lab.ErrNoSuchLab) && (stopped || ended > 0)) {
				return errors.Join(err, perr)
			}
			w := cmd.OutOrStdout()
			if ended > 0 {
				fmt.Fprintf(w, "ended %s that lab exec started (found by %s)\n", plural(ended, "process"), how)
			}
			fmt.Fprintf(w, "lab %q removed\n", name)
			if note != "" {
				fmt.Fprintln(w, note)
			}
			return perr
		},
	}
	nameFlag(c, &name)
	return c
}

// stopProcess sends SIGTERM to a lab's gateway, waits up to 5 s for it to exit (it
// removes its own lab on the way out), then SIGKILLs it and waits for it to be gone,
// so that a new lab of the same name never races the old gateway's cleanup.
func stopProcess(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil || p.Signal(syscall.SIGTERM) != nil {
		return false
	}
	gone := func(d time.Duration) bool {
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if !lab.Alive(pid) {
				return true
			}
		}
		return false
	}
	if !gone(5 * time.Second) {
		p.Signal(syscall.SIGKILL)
		gone(5 * time.Second)
	}
	return true
}

func newLabShowCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:   "show",
		Short: "Print the lab's gateway, addresses, profile, time scale, policy and run directory",
		Long: `Print what lab NAME is: its gateway (pid, whether it runs, uptime), namespaces and addresses,
the profile and time scale its policy runs at, the policy in force (live from the gateway,
timeouts in real units) and its run directory. A lab whose gateway died (killed) is shown
as dead, exit 4: ` + "`idlegate lab down`" + ` removes what it left.`,
		Example: "  sudo idlegate lab show\n  sudo idlegate lab show --name pool -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputOf(out, "text", "json", "yaml"); err != nil {
				return err
			}
			if err := lab.CheckName(name); err != nil {
				return usageError{err}
			}
			st, err := gateway.ReadState(name, "")
			if err != nil {
				return err
			}
			pid, alive := lab.Owner(name, "")
			if alive {
				// The live policy may have changed since the lab started.
				if cl, err := dialLab(name); err == nil {
					ctx, cancel := cl.ctx()
					if l, err := cl.Lab(ctx); err == nil {
						st = l
					}
					cancel()
				}
			} else {
				pid = st.PID
			}
			w := cmd.OutOrStdout()
			status := labStatus{Lab: st, Alive: alive, Status: "running"}
			if !alive {
				status.Status = "dead"
			}
			up := ""
			if alive {
				up = ", up " + policy.FormatDuration(time.Since(st.Started).Round(time.Second))
			}
			switch {
			case out != "text":
				if err := writeOut(w, out, status); err != nil {
					return err
				}
			case st.IsWedge():
				printWedgeState(w, st, pid, status.Status+up)
				if st.Metrics != "" {
					fmt.Fprintf(w, "  metrics  http://%s/metrics\n", st.Metrics)
				}
				if st.PolicyFile != "" {
					fmt.Fprintf(w, "  policy file %s\n", st.PolicyFile)
				}
				fmt.Fprintf(w, "policy (%s):\n%s", policyHeader(st.Name, st.PolicyView), indent(st.Policy.YAML(), "  "))
			default:
				fmt.Fprintf(w, "lab %s: gateway pid %d %s%s (MTU %d, %s TUN device)\n", st.Name, pid, status.Status, up, st.MTU, st.Device)
				fmt.Fprintf(w, "  client   netns %-20s %s %s  %s\n", st.Client.Namespace, st.Client.Link, st.Client.Addr4, st.Client.Addr6)
				fmt.Fprintf(w, "  server   netns %-20s %s %s  %s\n", st.Server.Namespace, st.Server.Link, st.Server.Addr4, st.Server.Addr6)
				fmt.Fprintf(w, "  NAT outside addresses (when nat.enabled): %s\n", strings.Join(st.NAT, ", "))
				fmt.Fprintf(w, "  run dir  %s\n  socket   %s\n", st.RunDir, st.Socket)
				if st.Metrics != "" {
					fmt.Fprintf(w, "  metrics  http://%s/metrics\n", st.Metrics)
				}
				if st.PolicyFile != "" {
					fmt.Fprintf(w, "  policy file %s\n", st.PolicyFile)
				}
				fmt.Fprintf(w, "policy (%s):\n%s", policyHeader(st.Name, st.PolicyView), indent(st.Policy.YAML(), "  "))
			}
			if !alive {
				down := "lab down"
				if st.IsWedge() {
					down = "wedge down"
				}
				return stateError{fmt.Sprintf("%s %q: its gateway (pid %d) is not running, it was killed or crashed; `idlegate %s --name %s` removes what it left", kindWord(st.Kind), name, pid, down, name), lab.ErrNoSuchLab}
			}
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlagOf(c, &out, "text", "json", "yaml")
	return c
}

// labStatus is a lab as lab show and lab list print it: its description and
// whether its gateway runs.
type labStatus struct {
	control.Lab
	Alive  bool   `json:"alive"`
	Status string `json:"status"` // running, dead
}

func newLabListCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the labs and wedges on this machine: name, kind, gateway pid, running or dead, profile, time scale, uptime",
		Long: `List the labs and wedges in /run/idlegate: name, kind (lab, or wedge: idlegate wedge),
gateway pid, whether the gateway runs (a dead one was killed: lab down removes what it
left), the profile and time scale of its policy, and how long it has been up; then, for
each wedge, the two namespaces it is between.`,
		Example: "  sudo idlegate lab list\n  sudo idlegate lab list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputOf(out, "text", "json", "yaml"); err != nil {
				return err
			}
			labs, err := listLabs()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "text" {
				return writeOut(w, out, labs)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tPID\tSTATUS\tPROFILE\tTIME SCALE\tUPTIME")
			for _, l := range labs {
				up := "-"
				if l.Alive {
					up = policy.FormatDuration(time.Duration(l.Uptime * float64(time.Second)).Round(time.Second))
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%g\t%s\n", l.Name, dash(l.Kind), l.PID, l.Status, dash(l.Profile), l.Scale(), up)
			}
			tw.Flush()
			wedges := 0
			for _, l := range labs {
				if l.IsWedge() {
					wedges++
					if l.Wedge != nil {
						fmt.Fprintf(w, "wedge %s: %s (A, inside) <-> %s (B, outside)\n", l.Name, l.Wedge.Sides[0].Target, l.Wedge.Sides[1].Target)
					}
				}
			}
			if wedges == 0 {
				fmt.Fprintln(w, plural(len(labs), "lab"))
			} else {
				fmt.Fprintf(w, "%s, %s\n", plural(len(labs)-wedges, "lab"), plural(wedges, "wedge"))
			}
			return nil
		},
	}
	outputFlagOf(c, &out, "text", "json", "yaml")
	return c
}

// listLabs reads every lab in the default run base.
func listLabs() ([]labStatus, error) {
	entries, err := os.ReadDir(lab.DefaultRunBase)
	if errors.Is(err, fs.ErrNotExist) {
		return []labStatus{}, nil
	}
	if err != nil {
		return nil, err
	}
	labs := []labStatus{}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || lab.CheckName(name) != nil {
			continue
		}
		st, err := gateway.ReadState(name, "")
		if errors.Is(err, control.ErrPermission) {
			return nil, err
		}
		if err != nil {
			// A lab or wedge still starting, or leftovers without a state file.
			st = control.Lab{Name: name, PID: 0}
			if lab.IsWedge(lab.RunDir(name, "")) {
				st.Kind = control.KindWedge
			}
			if pid, perr := lab.ReadPID(name, ""); perr == nil {
				st.PID = pid
			}
		}
		l := labStatus{Lab: st, Status: "dead"}
		if pid, ok := lab.Owner(name, ""); ok {
			l.PID, l.Alive, l.Status = pid, true, "running"
			if !st.Started.IsZero() {
				l.Uptime = time.Since(st.Started).Seconds()
			}
		}
		labs = append(labs, l)
	}
	return labs, nil
}

func indent(s, pre string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pre + l
		}
	}
	return strings.Join(lines, "")
}

func newLabExecCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "exec client|server -- CMD [ARGS...]",
		Short: "Run a program inside the lab's client or server namespace",
		Long: `Run a program inside lab NAME's client or server namespace, with this process's environment
and /sys as ` + "`ip netns exec`" + ` gives it. The program belongs to the lab: ` + "`lab down`" + ` ends it
and everything it started. It joins the lab's cgroup (idlegate/NAME in the unified cgroup
hierarchy) where the machine has a writable one, else it is tracked by process (pid and
start time; a daemon that leaves its parent then escapes).`,
		Example: `  sudo idlegate lab exec client -- ping -c1 198.19.0.2
  sudo idlegate lab exec server -- python3 -m http.server 80
  sudo idlegate lab exec --name pool client -- ssh 198.19.0.2`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lab.CheckName(name); err != nil {
				return usageError{err}
			}
			if args[1] == "--" { // `lab exec --name X client -- cmd`: flags ended before client
				args = append(args[:1], args[2:]...)
				if len(args) < 2 {
					return usagef("give the command to run after --, e.g. lab exec client -- ping -c1 %s", lab.ServerAddr4)
				}
			}
			var ns string
			switch args[0] {
			case "client":
				ns = lab.ClientNamespace(name)
			case "server":
				ns = lab.ServerNamespace(name)
			default:
				return usagef("the first argument is client or server, not %q", args[0])
			}
			if err := lab.CheckHost(); err != nil {
				return err
			}
			if !lab.Exists(name, "") {
				return lab.NoSuchLab(name)
			}
			if _, err := exec.LookPath(args[1]); err != nil {
				return usagef("command %q not found in PATH", args[1])
			}
			// Join the lab's processes before exec, so that lab down ends this
			// program and everything it starts.
			if _, _, err := lab.JoinLab(name, ""); err != nil {
				return err
			}
			return lab.ExecIn(ns, args[1:])
		},
	}
	nameFlag(c, &name)
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v: put the command after --, e.g. idlegate lab exec client -- ping -c1 %s", err, lab.ServerAddr4)
	})
	return c
}
