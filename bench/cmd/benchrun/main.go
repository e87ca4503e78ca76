// Command benchrun is `make bench`: idlegate's lab against a kernel router with
// conntrack, round by round, printing one table of medians (see package bench).
//
//	benchrun [-rounds 3] [-duration 10s] [-flows 1000000] [-device water|fast] [-write BENCHMARKS.md]
//
// BENCH_QUICK=1 (or -quick) makes it a one-minute smoke: 1 s tests and a
// 100000-flow flood, unless flags say otherwise. BENCH_DEVICE sets -device.
// It needs root. Exit codes: 0 done, 1 a failure, 2 bad usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/idlegate/idlegate/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	quickEnv := os.Getenv("BENCH_QUICK")
	quick := flag.Bool("quick", quickEnv != "" && quickEnv != "0", "a one-minute smoke run (default from BENCH_QUICK)")
	rounds := flag.Int("rounds", 3, "rounds per path")
	dur := flag.Duration("duration", 10*time.Second, "length of each iperf3 and rr test (quick: 1s)")
	flows := flag.Int("flows", 1000000, "idlegate table capacity and flood target (quick: 100000)")
	floodLimit := flag.Duration("flood-limit", time.Minute, "longest flood (quick: 20s)")
	mtu := flag.Int("mtu", 1500, "MTU of both paths")
	device := flag.String("device", os.Getenv("BENCH_DEVICE"), "force the lab's TUN device: water or fast (default from BENCH_DEVICE; empty: the lab's choice)")
	write := flag.String("write", "", "rewrite the \"## System benchmark\" section of this Markdown file with the result")
	rr := flag.String("rr", defaultRR(), "the rr binary (bench/rr)")
	iperf3 := flag.String("iperf3", "iperf3", "the iperf3 binary")
	labName := flag.String("lab", "bench", "lab name: namespaces NAME-client and NAME-server")
	prefix := flag.String("kernel-prefix", "bench-k", "kernel topology namespaces: PREFIX-client, PREFIX-router, PREFIX-server")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchrun: unexpected argument %q; see benchrun -h\n", flag.Arg(0))
		return 2
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["duration"] {
			*dur = time.Second
		}
		if !set["flows"] {
			*flows = 100000
		}
		if !set["flood-limit"] {
			*floodLimit = 20 * time.Second
		}
	}
	if *rounds < 1 || *dur < time.Second || *flows < 1000 || *mtu < 1280 || *mtu > 65535 {
		fmt.Fprintln(os.Stderr, "benchrun: need -rounds >= 1, -duration >= 1s, -flows >= 1000 and -mtu 1280..65535")
		return 2
	}
	if *device != "" && *device != "water" && *device != "fast" {
		fmt.Fprintf(os.Stderr, "benchrun: -device %q: pick water or fast, or leave it empty for the lab's choice\n", *device)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	res, err := bench.Run(ctx, bench.Config{
		Rounds: *rounds, Duration: *dur, Flows: *flows, FloodLimit: *floodLimit, MTU: *mtu,
		Device: *device, LabName: *labName, KernelPrefix: *prefix, RR: *rr, Iperf3: *iperf3,
		Log: os.Stderr,
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "benchrun: interrupted; the lab and the kernel topology are removed")
		} else {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
		}
		return 1
	}
	fmt.Println()
	fmt.Println(res.Env)
	fmt.Println()
	fmt.Print(res.Table())
	for _, n := range res.Notes {
		fmt.Println(n)
	}
	if *quick {
		fmt.Println("BENCH_QUICK smoke run: short tests and a small flood; not a measurement.")
	}
	if *write != "" {
		if err := bench.WriteSection(*write, bench.SectionHeading, res.Section(command(*quick, *device), *quick)); err != nil {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
			return 1
		}
		fmt.Printf("wrote the %q section of %s\n", bench.SectionHeading, *write)
	}
	return 0
}

// defaultRR is rr beside this binary (make bench builds both into bin/), else
// rr from PATH.
func defaultRR() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "rr")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "rr"
}

// command is how this run was started, as Markdown for BENCHMARKS.md.
func command(quick bool, device string) string {
	self := "`" + strings.Join(os.Args, " ") + "`"
	if os.Getenv("MAKELEVEL") == "" {
		return self
	}
	var env []string
	if quick {
		env = append(env, "BENCH_QUICK=1")
	}
	if device != "" {
		env = append(env, "BENCH_DEVICE="+device)
	}
	if f := os.Getenv("BENCH_FLAGS"); f != "" {
		env = append(env, "BENCH_FLAGS='"+f+"'")
	}
	return "`" + strings.TrimSpace(strings.Join(env, " ")+" make bench") + "` (runs " + self + ")"
}
