package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/report"
	"github.com/idlegate/idlegate/scenarios"
	"github.com/idlegate/idlegate/tun"
)

var errScenarioFailed = errors.New("a scenario's expectations were not met")

func newScenarioCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "scenario",
		Short: "Replay the keepalive playbook: self-checking stories with real sockets",
		Long: `A scenario is a story told with real kernel sockets through the gateway: a policy, the
processes to run in the client and server namespaces (built-in agents or any program),
timed steps, and expectations. Each run prints a timeline (client | gateway | server)
and one verdict line, and exits 1 if any expectation was not met. See docs/playbook.md.`,
		Example: `  idlegate scenario list
  sudo idlegate scenario run idle-reset
  sudo idlegate scenario run ./my-story.yaml --pcap story.pcapng
  sudo idlegate scenario run --all --parallel 8`,
	}
	c.AddCommand(newScenarioListCmd(), newScenarioShowCmd(), newScenarioRunCmd())
	return c
}

func newScenarioListCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the built-in scenarios",
		Example: "  idlegate scenario list\n  idlegate scenario list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			list, err := scenarios.Playbook()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out == "json" {
				type item struct {
					Name     string   `json:"name"`
					Title    string   `json:"title"`
					Concept  string   `json:"concept"`
					Variants []string `json:"variants,omitempty"`
				}
				var items []item
				for _, s := range list {
					items = append(items, item{s.Name, s.Title, strings.TrimSpace(s.Concept), s.VariantNames()})
				}
				return writeJSONOut(w, items)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for i, s := range list {
				var vs string
				for _, v := range s.VariantNames() {
					vs += " :" + v
				}
				if vs != "" {
					vs = " (also" + vs + ")"
				}
				fmt.Fprintf(tw, "%2d\t%s\t%s%s\n", i+1, s.Name, s.Title, vs)
			}
			return tw.Flush()
		},
	}
	outputFlag(c, &out)
	return c
}

func newScenarioShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Print a built-in scenario's file, a starting point for your own",
		Example: "  idlegate scenario show tcp-keepalive-saves > mine.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := scenarios.Lookup(args[0]); err != nil {
				return scenarioUsage(err)
			}
			b, err := scenarios.Source(args[0])
			if err != nil {
				return usagef("%q is not a built-in scenario", args[0])
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

type scenarioRunOpts struct {
	all      bool
	parallel int
	pcap     string
	force    bool
	output   string
	html     string
}

func newScenarioRunCmd() *cobra.Command {
	var o scenarioRunOpts
	c := &cobra.Command{
		Use:   "run NAME|FILE... | --all",
		Short: "Play scenarios in fresh labs and check their expectations",
		Long: `Play each scenario in a lab of its own (a unique name, so runs never collide), print
its timeline and verdict, and remove the lab and every process it started, on every exit
path (Ctrl-C too). Exit status 1 if any expectation failed, 2 for a bad scenario file or
flag, 3 if the machine cannot run a lab.`,
		Example: `  sudo idlegate scenario run tcp-keepalive-saves
  sudo idlegate scenario run idle-drop idle-reset -o json
  sudo idlegate scenario run tcp-keepalive-saves:scale
  sudo idlegate scenario run idle-reset --html idle-reset.html
  sudo idlegate scenario run --all --parallel 8`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScenarios(cmd.OutOrStdout(), args, o)
		},
	}
	c.Flags().BoolVar(&o.all, "all", false, "run every built-in scenario and each of its variants (NAME:VARIANT)")
	c.Flags().IntVar(&o.parallel, "parallel", 1, "how `MANY` scenarios run at once")
	c.Flags().StringVar(&o.pcap, "pcap", "", "record what crosses the gateway to a new `FILE` (with several scenarios, FILE gets each name inserted)")
	c.Flags().BoolVar(&o.force, "force", false, "with --pcap: overwrite the file if it exists")
	c.Flags().StringVar(&o.html, "html", "", "write a self-contained HTML report of the run to `FILE`: sequence diagram, idle timers, table (with several scenarios, FILE gets each name inserted)")
	outputFlag(c, &o.output)
	return c
}

// scenarioUsage marks an unknown scenario or a malformed scenario file (exit 2).
func scenarioUsage(err error) error { return usageError{err} }

func runScenarios(w io.Writer, args []string, o scenarioRunOpts) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	if o.parallel < 1 {
		return usagef("--parallel %d: give 1 or more", o.parallel)
	}
	if o.html == "-" {
		return usagef("--html -: scenario run prints its timeline on stdout; give a file name")
	}
	var list []*scenarios.Scenario
	switch {
	case o.all && len(args) > 0:
		return usagef("give scenario names or --all, not both")
	case o.all:
		var err error
		if list, err = scenarios.Runs(); err != nil {
			return err
		}
	case len(args) == 0:
		return usagef("name a scenario (see `idlegate scenario list`), give a file, or use --all")
	default:
		for _, a := range args {
			s, err := scenarios.Lookup(a)
			if err != nil {
				return scenarioUsage(err)
			}
			list = append(list, s)
		}
	}
	if err := lab.CheckHost(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	reports := make([]*scenarios.Report, len(list))
	// Variants start first: they are the stories played slower, and the longest runs
	// started last would leave the others idle at the end. Reports keep list's order.
	var order []int
	for _, first := range []bool{true, false} {
		for i, s := range list {
			if (s.VariantInfo() != nil) == first {
				order = append(order, i)
			}
		}
	}
	var (
		mu         sync.Mutex
		htmlFailed error
		envErr     error
		next       int
		started    = time.Now()
	)
	work := func() {
		for {
			mu.Lock()
			if next >= len(list) || envErr != nil || ctx.Err() != nil {
				mu.Unlock()
				return
			}
			i := order[next]
			next++
			mu.Unlock()
			s := list[i]
			opts := scenarios.Options{Pcap: o.pcap, PcapForce: o.force, Capture: o.html != ""}
			if o.pcap != "" && len(list) > 1 {
				opts.Pcap = withName(o.pcap, s.Name)
			}
			rep, err := scenarios.Run(ctx, s, opts)
			if err != nil {
				if errors.Is(err, lab.ErrNotRoot) || errors.Is(err, tun.ErrNoTUN) {
					mu.Lock()
					envErr = err
					mu.Unlock()
					return
				}
				rep = &scenarios.Report{Name: s.Name, Title: s.Title, Verdict: "FAIL", Error: err.Error(), Policy: s.Policy()}
			}
			var htmlErr error
			if o.html != "" && err == nil {
				htmlErr = scenarioHTML(s, rep, o.html, len(list) > 1)
			}
			mu.Lock()
			reports[i] = rep
			if o.output == "text" {
				rep.WriteTextWidth(w, termWidth())
			}
			if htmlErr != nil {
				rep.Warnings = append(rep.Warnings, htmlErr.Error())
				fmt.Fprintf(os.Stderr, "idlegate: %s: %v\n", s.Name, htmlErr)
				if htmlFailed == nil {
					htmlFailed = htmlErr
				}
			}
			if o.output == "text" {
				fmt.Fprintln(w)
			}
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	for range min(o.parallel, len(list)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	wg.Wait()
	if envErr != nil {
		return envErr
	}
	passed, failed := 0, 0
	var done []*scenarios.Report
	for _, r := range reports {
		if r == nil {
			continue
		}
		done = append(done, r)
		if r.Pass {
			passed++
		} else {
			failed++
		}
	}
	if o.output == "json" {
		if len(list) == 1 && len(done) == 1 {
			if err := writeJSONOut(w, done[0]); err != nil {
				return err
			}
		} else if err := writeJSONOut(w, map[string]any{"pass": failed == 0 && len(done) == len(list), "passed": passed, "failed": failed, "reports": done}); err != nil {
			return err
		}
	} else if len(list) > 1 {
		fmt.Fprintf(w, "=== summary (%.1fs wall, --parallel %d)\n", time.Since(started).Seconds(), o.parallel)
		for _, r := range done {
			fmt.Fprintln(w, r.VerdictLine())
		}
		if n := len(list) - len(done); n > 0 {
			fmt.Fprintf(w, "%d not run (interrupted)\n", n)
		}
		fmt.Fprintf(w, "scenarios: %d passed, %d failed\n", passed, failed)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; every lab and process was removed")
	}
	if failed > 0 || len(done) < len(list) {
		return errScenarioFailed
	}
	if htmlFailed != nil {
		return fmt.Errorf("the report could not be written: %w", htmlFailed)
	}
	return nil
}

// withName inserts a scenario's name before a file's extension: run.html -> run-idle-reset.html.
func withName(path, name string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + name + ext
}

// scenarioHTML writes the HTML report of one run to path (several: with its name
// inserted) and says so on stderr, which stays clear of -o json.
func scenarioHTML(s *scenarios.Scenario, rep *scenarios.Report, path string, several bool) error {
	if several {
		path = withName(path, s.Name)
	}
	r, err := report.FromScenario(s, rep)
	if err != nil {
		return err
	}
	return writeReport(io.Discard, os.Stderr, path, r)
}
