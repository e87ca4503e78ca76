package bench

// The wedge against the direct path between the same two namespaces, built as
// docker builds two containers on one bridge:
//
//	            wbench-h: br0 198.19.0.1/24
//	             |                       |
//	  wbench-a: eth0 198.19.0.3/24   wbench-b: eth0 198.19.0.2/24 (iperf3 -s, rr server)
//
// Direct: A reaches B over the bridge. Wedge: gateway.StartWedge puts the
// gateway (policy.Default, in this process, the lab's TUN device) between them;
// A's route to 198.19.0.2/32 goes through its TUN. The two take turns round by
// round. A measurement, not a check: it runs only when IDLEGATE_WEDGE_BENCH is
// the number of rounds, and prints rows for BENCHMARKS.md:
//
//	go build -o /tmp/rr ./bench/rr
//	IDLEGATE_WEDGE_BENCH=3 IDLEGATE_RR=/tmp/rr go test ./bench -run TestWedgeBench -v -timeout 20m

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

func TestWedgeBench(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("IDLEGATE_WEDGE_BENCH"))
	if rounds <= 0 {
		t.Skip("a measurement: set IDLEGATE_WEDGE_BENCH=ROUNDS (and IDLEGATE_RR=path to bench/rr) to run it")
	}
	needRoot(t)
	rr := os.Getenv("IDLEGATE_RR")
	if rr == "" {
		t.Fatal("IDLEGATE_RR: give the path of a built bench/rr")
	}
	iperf3, err := exec.LookPath("iperf3")
	if err != nil {
		t.Fatal(err)
	}
	h, a, b := "wbench-h", "wbench-a", "wbench-b"
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range []string{a, b, h} {
			exec.Command("ip", "netns", "delete", ns).Run()
		}
	})
	for _, ns := range []string{h, a, b} {
		sh("netns", "add", ns)
	}
	sh("-n", h, "link", "add", "br0", "type", "bridge")
	sh("-n", h, "link", "set", "br0", "up")
	sh("-n", h, "addr", "add", "198.19.0.1/24", "dev", "br0")
	for ns, addr := range map[string]string{a: "198.19.0.3", b: lab.ServerAddr4.String()} {
		sh("-n", h, "link", "add", "v"+ns[len(ns)-1:], "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh("-n", h, "link", "set", "v"+ns[len(ns)-1:], "master", "br0", "up")
		sh("-n", ns, "link", "set", "lo", "up")
		sh("-n", ns, "link", "set", "eth0", "up")
		sh("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		sh("-n", ns, "route", "add", "default", "via", "198.19.0.1")
	}
	for _, srv := range [][]string{{iperf3, "-s", "-p", strconv.Itoa(iperfPort)}, {rr, "server", "-listen", ":" + strconv.Itoa(rrPort)}} {
		port := iperfPort
		if srv[0] == rr {
			port = rrPort
		}
		s, err := startServer(b, port, srv...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.stop)
	}
	cfg := Config{Duration: 5 * time.Second, RR: rr, Iperf3: iperf3}
	p := &path{clientNS: a, serverNS: b}
	ctx := context.Background()
	samples := map[string]map[string][]float64{"direct": {}, "wedge": {}}
	device := ""
	for round := range rounds {
		order := []string{"direct", "wedge"}
		if round%2 == 1 {
			order = []string{"wedge", "direct"}
		}
		for _, how := range order {
			var run *gateway.Running
			if how == "wedge" {
				run, err = gateway.StartWedge(ctx, lab.WedgeConfig{Name: "wbench", A: lab.Target{Kind: "netns", Value: a}, B: lab.Target{Kind: "netns", Value: b}},
					policy.Default(), gateway.WedgeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				device = run.Wedge.Device
			}
			for _, test := range []func() (map[string]float64, error){
				func() (map[string]float64, error) { return iperfTCP(ctx, cfg, p, 1) },
				func() (map[string]float64, error) { return requestResponse(ctx, cfg, p) },
			} {
				m, err := test()
				if err != nil {
					if run != nil {
						run.Stop()
					}
					t.Fatalf("%s, round %d: %v", how, round, err)
				}
				for k, v := range m {
					samples[how][k] = append(samples[how][k], v)
				}
			}
			if run != nil {
				if err := run.Stop(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	med := func(l []float64) float64 {
		l = slices.Clone(l)
		slices.Sort(l)
		return l[len(l)/2]
	}
	load, _ := os.ReadFile("/proc/loadavg")
	var b2 strings.Builder
	fmt.Fprintf(&b2, "%d rounds of 5 s, %s, %s TUN device, nproc %d, load %s\n", rounds, runtime.Version(), device, runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(&b2, "| test | unit | direct | wedge | wedge/direct |\n| --- | --- | ---: | ---: | ---: |\n")
	for _, row := range []struct{ key, name, unit string }{
		{"tcp1", "iperf3 TCP, 1 stream", "Gbit/s"},
		{"rr_rate", "rr TCP 64 B request/response, 1 conn", "round trips/s"},
		{"rr_p50", "rr latency p50", "µs"},
		{"rr_p99", "rr latency p99", "µs"},
	} {
		d, w := med(samples["direct"][row.key]), med(samples["wedge"][row.key])
		fmt.Fprintf(&b2, "| %s | %s | %s | %s | %.2f× |\n", row.name, row.unit, num(d), num(w), w/d)
	}
	t.Log("\n" + b2.String())
}

// num prints a median with three significant digits, without an exponent.
func num(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
