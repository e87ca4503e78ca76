package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Row is one line of the result table.
type Row struct {
	Key, Label, Unit string
}

// noRatio lists the rows whose two values are not comparable.
var noRatio = map[string]bool{"flood_flows": true}

// Rows are the table's lines in order; the keys are the metrics tests report.
var Rows = []Row{
	{"tcp1", "iperf3 TCP, 1 stream", "Gbit/s"},
	{"tcp4", "iperf3 TCP, 4 streams", "Gbit/s"},
	{"udp_pps", "iperf3 UDP 64 B at full rate, delivered", "kpps"},
	{"udp_loss", "iperf3 UDP 64 B at full rate, loss", "%"},
	{"rr_rate", "rr TCP 64 B request/response, 1 conn", "round trips/s"},
	{"rr_p50", "rr latency p50", "µs"},
	{"rr_p99", "rr latency p99", "µs"},
	{"flood_rate", "flow flood: new entries/s (kernel: nf_conntrack_count)", "k/s"},
	{"flood_flows", "flow flood: entries when it stopped", "flows"},
	{"flood_bpf", "memory per tracked flow (idlegate RSS growth; kernel nf_conntrack slab)", "B"},
	{"flood_rss", "gateway resident memory with the table full", "MiB"},
}

// Env is where a run took place.
type Env struct {
	Kernel   string
	CPU      string
	NProc    int
	Go       string
	Iperf3   string
	MTU      int
	Device   string // the lab's TUN device
	Rounds   int
	Duration time.Duration
	Flows    int
	Load     string // /proc/loadavg's 1, 5 and 15 minute averages at the start
	Date     time.Time
}

func environment(cfg Config, device string) Env {
	e := Env{NProc: runtime.NumCPU(), Go: runtime.Version(), MTU: cfg.MTU, Device: device,
		Rounds: cfg.Rounds, Duration: cfg.Duration, Flows: cfg.Flows, Date: time.Now().UTC()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command(cfg.Iperf3, "--version").Output(); err == nil {
		e.Iperf3, _, _ = strings.Cut(string(out), "\n")
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if fs := strings.Fields(string(b)); len(fs) >= 3 {
			e.Load = strings.Join(fs[:3], " ")
		}
	}
	return e
}

// String is the environment as a few lines of text.
func (e Env) String() string {
	return fmt.Sprintf("kernel %s, CPU %s, nproc %d, %s, %s\n"+
		"MTU %d on both paths, idlegate device: %s\n"+
		"%d rounds, %s per iperf3/rr test, flood up to %d flows; load average at start %s; %s",
		e.Kernel, e.CPU, e.NProc, e.Go, e.Iperf3, e.MTU, e.Device,
		e.Rounds, e.Duration, e.Flows, e.Load, e.Date.Format(time.RFC3339))
}

// median of xs; NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// formatValue prints three significant digits or so.
func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// Table is the result as a Markdown table of medians with the ratio
// idlegate/kernel per line.
func (r *Result) Table() string {
	head := []string{"test", "unit", "idlegate (" + r.Env.Device + ")", "kernel", "idlegate/kernel"}
	rows := [][]string{head}
	for _, row := range Rows {
		ig, k := median(r.Idlegate[row.Key]), median(r.Kernel[row.Key])
		ratio := "-"
		if !noRatio[row.Key] && !math.IsNaN(ig) && !math.IsNaN(k) && k != 0 {
			ratio = fmt.Sprintf("%.2f×", ig/k)
		}
		rows = append(rows, []string{row.Label, row.Unit, formatValue(ig), formatValue(k), ratio})
	}
	width := make([]int, len(head))
	for _, cells := range rows {
		for i, c := range cells {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i >= 2 {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		b.WriteString("\n")
	}
	line(rows[0])
	b.WriteString("|")
	for i, w := range width {
		if i >= 2 {
			b.WriteString(" " + strings.Repeat("-", w-1) + ": |")
		} else {
			b.WriteString(" " + strings.Repeat("-", w) + " |")
		}
	}
	b.WriteString("\n")
	for _, cells := range rows[1:] {
		line(cells)
	}
	return b.String()
}

// SectionHeading is the heading of the part of BENCHMARKS.md a run rewrites.
const SectionHeading = "## System benchmark"

// Section is the BENCHMARKS.md section for this result; command is how the
// run was started, in Markdown; quick says it was a smoke run.
func (r *Result) Section(command string, quick bool) string {
	var b strings.Builder
	b.WriteString(SectionHeading + "\n\n")
	b.WriteString(`idlegate's lab against a kernel router on the same machine, same address plan and MTU:
client namespace -> router namespace (two veths, ip_forward, nftables forward chain with
` + "`ct state established,related accept` and `ct state new accept`" + `) -> server namespace. The
gateway runs in the benchmark's own process with ` + "`policy.Default()`" + `, a table as large as the
flood and a 10-minute UDP timeout. The two paths take turns test by test, the first path
alternating per round. Each cell is the median over the rounds; the ratio is idlegate/kernel
(above 1 is better for rates, worse for loss, latency and memory).

- iperf3 TCP with 1 and 4 streams: receiver goodput.
- iperf3 UDP ` + "`-b 0 -l 64`" + `: datagrams delivered per second at the receiver and the loss.
- rr (` + "`bench/rr`" + `): one connection, 64-byte request echoed back, round trips per second and
  latency percentiles.
- Flow flood: one UDP datagram per new flow (raw socket in the client namespace, source
  addresses 198.18.0.10 and up, every source port), at most 512 unaccounted datagrams in
  flight, until the table holds the target number of new entries: idlegate's table is full
  (its capacity is the target), the kernel's stops at nf_conntrack_max. Entries are counted in
  idlegate's table and in the router's nf_conntrack_count. Memory per flow: the gateway's RSS
  growth over a cold table (VmRSS of the process); the kernel's nf_conntrack slab objects.

Run it with ` + "`make bench`" + ` (about 5 minutes; needs root), ` + "`BENCH_QUICK=1 make bench`" + ` for a one-minute
smoke, ` + "`BENCH_FLAGS='-rounds 5'`" + ` for more (` + "`bin/benchrun -h`" + ` lists the flags),
` + "`BENCH_DEVICE=water|fast`" + ` to force the lab's TUN device. Take numbers on a quiet machine: the
two paths share its cores with everything else.

`)
	fmt.Fprintf(&b, "Latest run: %s\n\n", command)
	if quick {
		b.WriteString("**A BENCH_QUICK smoke run: short tests and a small flood, to show the harness works. Not a measurement.**\n\n")
	}
	b.WriteString("```\n" + r.Env.String() + "\n```\n\n")
	b.WriteString(r.Table())
	for _, n := range r.Notes {
		b.WriteString("\n" + n + "\n")
	}
	return b.String()
}

// WriteSection replaces the section that starts with heading in the Markdown
// file path (up to the next "## " heading) with section, or appends it. Other
// sections are kept as they are.
func WriteSection(path, heading, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	lines := strings.SplitAfter(string(old), "\n")
	start, end := -1, len(lines)
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if start < 0 && t == heading {
			start = i
		} else if start >= 0 && strings.HasPrefix(t, "## ") {
			end = i
			break
		}
	}
	section = strings.TrimRight(section, "\n") + "\n"
	var out string
	if start < 0 {
		out = strings.TrimRight(string(old), "\n")
		if out != "" {
			out += "\n\n"
		}
		out += section
	} else {
		before := strings.Join(lines[:start], "")
		after := strings.Join(lines[end:], "")
		if after != "" {
			section += "\n"
		}
		out = before + section + after
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
