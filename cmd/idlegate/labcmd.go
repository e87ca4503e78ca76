package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	c.AddCommand(newLabUpCmd(), newLabDownCmd(), newLabShowCmd(), newLabExecCmd())
	return c
}

type labUpOpts struct {
	name, config, pcap string
	profile            string
	scale              float64
	mtu                int
	detach             bool
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
foreground until Ctrl-C; with it, in the background, with its pid file, log and control
socket in /run/idlegate/NAME. Leftovers of a killed gateway of the same name are removed
first.`,
		Example: `  sudo idlegate lab up
  sudo idlegate lab up --profile aws-nat-gateway --time-scale 0.01 --detach
  sudo idlegate lab up --name pool --config aws-nat.yaml --detach
  sudo idlegate lab up --set timeouts.tcp.established=5s --set orphan=reset --pcap /tmp/run.pcapng`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return labUp(cmd, o) },
	}
	nameFlag(c, &o.name)
	c.Flags().StringVar(&o.profile, "profile", "", "start from a built-in middlebox profile (see `idlegate profiles`)")
	c.Flags().StringVar(&o.config, "config", "", "policy YAML file (over --profile, if both)")
	scaleFlag(c, &o.scale)
	c.Flags().StringArrayVar(&o.sets, "set", nil, "override one policy key, KEY=VALUE (repeatable)")
	c.Flags().StringVar(&o.pcap, "pcap", "", "record what crosses the gateway to this pcapng file")
	c.Flags().IntVar(&o.mtu, "mtu", lab.DefaultMTU, "MTU of both TUN links")
	c.Flags().BoolVar(&o.detach, "detach", false, "run the gateway in the background")
	return c
}

func labUp(cmd *cobra.Command, o labUpOpts) error {
	if err := lab.CheckName(o.name); err != nil {
		return usageError{err}
	}
	if err := checkScale(o.scale); err != nil {
		return err
	}
	if o.mtu < 1280 || o.mtu > 65535 {
		return usagef("--mtu %d: pick an MTU from 1280 (the IPv6 minimum) to 65535", o.mtu)
	}
	realPol, err := loadPolicyFrom(o.profile, o.config, o.sets)
	if err != nil {
		return err
	}
	pol, err := realPol.Scale(o.scale)
	if err != nil {
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
	run, err := gateway.StartLab(ctx, lab.Config{Name: o.name, MTU: o.mtu}, pol, gateway.LabOptions{
		Pcap: absPath(o.pcap), PolicyFile: absPath(o.config), Log: log,
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
		printLabSummary(cmd.OutOrStdout(), run.Lab.Name, run.Lab.RunDir, realPol, o.scale)
		fmt.Fprintln(cmd.OutOrStdout(), "gateway running; Ctrl-C stops it and removes the lab")
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
		printLabSummary(cmd.OutOrStdout(), o.name, lab.RunDir(o.name, ""), pol, o.scale)
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
	args := []string{"lab", "up"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "detach":
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
func printLabSummary(w io.Writer, name, runDir string, pol policy.Policy, scale float64) {
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
		Short: "Stop the lab's gateway and remove its namespaces and run directory",
		Long: `Stop the gateway of lab NAME (SIGTERM, then SIGKILL after 5 s) and remove its namespaces,
links and run directory, including leftovers of a gateway that was killed.`,
		Example: "  sudo idlegate lab down\n  sudo idlegate lab down --name pool",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckName(name); err != nil {
				return usageError{err}
			}
			if err := lab.CheckHost(); err != nil {
				return err
			}
			stopped := false
			if pid, ok := lab.Owner(name, ""); ok && pid != os.Getpid() {
				stopped = stopProcess(pid)
			}
			if err := lab.Cleanup(name, ""); err != nil {
				// A gateway stopped by SIGTERM removes its own lab: nothing is left.
				if errors.Is(err, lab.ErrNoSuchLab) && stopped {
					fmt.Fprintf(cmd.OutOrStdout(), "lab %q removed\n", name)
					return nil
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %q removed\n", name)
			return nil
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
		Use:     "show",
		Short:   "Print the lab's addresses, policy and run directory",
		Example: "  sudo idlegate lab show\n  sudo idlegate lab show --name pool -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if err := lab.CheckName(name); err != nil {
				return usageError{err}
			}
			st, err := gateway.ReadState(name, "")
			if err != nil {
				return err
			}
			// The live policy may have changed since the lab started.
			if c, err := dialLab(name); err == nil {
				var p policy.Policy
				if c.do("GET", "/v1/policy", nil, &p) == nil {
					st.Policy = p
				}
			}
			w := cmd.OutOrStdout()
			if out == "json" {
				return writeJSONOut(w, st)
			}
			fmt.Fprintf(w, "lab %s (gateway pid %d, MTU %d, %s TUN device)\n", st.Name, st.PID, st.MTU, st.Device)
			fmt.Fprintf(w, "  client   netns %-20s %s %s  %s\n", st.Client.Namespace, st.Client.Link, st.Client.Addr4, st.Client.Addr6)
			fmt.Fprintf(w, "  server   netns %-20s %s %s  %s\n", st.Server.Namespace, st.Server.Link, st.Server.Addr4, st.Server.Addr6)
			fmt.Fprintf(w, "  NAT outside addresses (when nat.enabled): %s\n", strings.Join(st.NAT, ", "))
			fmt.Fprintf(w, "  run dir  %s\n  socket   %s\n", st.RunDir, st.Socket)
			if st.PolicyFile != "" {
				fmt.Fprintf(w, "  policy file %s\n", st.PolicyFile)
			}
			fmt.Fprintf(w, "policy:\n%s", indent(st.Policy.YAML(), "  "))
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	return c
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
			return lab.ExecIn(ns, args[1:])
		},
	}
	nameFlag(c, &name)
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v: put the command after --, e.g. idlegate lab exec client -- ping -c1 %s", err, lab.ServerAddr4)
	})
	return c
}
