package gateway_test

// A measurement, not a test: iperf3 through a lab on each TUN device kind,
// interleaved round by round. It runs only when IDLEGATE_IPERF names the
// number of rounds, as root, with iperf3 installed:
//
//	IDLEGATE_IPERF=3 go test ./gateway -run TestIperfDataPath -v -timeout 30m
//
// IDLEGATE_IPERF_DEVICES (default "water,fast") and IDLEGATE_IPERF_TESTS
// (default "tcp1,tcp4,udp64") choose what runs, IDLEGATE_IPERF_SECONDS how
// long each run lasts (default 5), and IDLEGATE_CPUPROFILE=PREFIX writes a CPU
// profile of the gateway per device and test to PREFIX-DEVICE-TEST.pprof (the
// last round's). The topology is the one startLab draws, with the default
// policy; NAT on with IDLEGATE_IPERF_NAT=1. The test "rr" (TCP request/response,
// 64 bytes, one connection) runs the program IDLEGATE_RR names: bench/rr, built
// with `go build -o /tmp/rr ./bench/rr`.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

type iperfResult struct {
	gbps          float64 // TCP: received
	sentPPS, pps  float64 // UDP: sent and delivered datagrams per second
	lossPct       float64
	gatewayCPUPct float64 // process CPU time / wall time during the run
	rrPerSec      float64 // rr: round trips per second
	p50us, p99us  float64 // rr: latency percentiles
}

func TestIperfDataPath(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("IDLEGATE_IPERF"))
	if rounds <= 0 {
		t.Skip("a measurement: set IDLEGATE_IPERF=ROUNDS to run it")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 is not installed")
	}
	needRoot(t)
	devices := strings.Split(envOr("IDLEGATE_IPERF_DEVICES", "water,fast"), ",")
	tests := strings.Split(envOr("IDLEGATE_IPERF_TESTS", "tcp1,tcp4,udp64"), ",")
	secs := envOr("IDLEGATE_IPERF_SECONDS", "5")
	results := map[string][]iperfResult{}
	for r := range rounds {
		for _, dev := range devices {
			pol := policy.Default()
			if os.Getenv("IDLEGATE_IPERF_NAT") == "1" {
				pol.NAT.Enabled = true
			}
			run := startDeviceLab(t, dev, pol)
			for _, test := range tests {
				prof := ""
				if p := os.Getenv("IDLEGATE_CPUPROFILE"); p != "" && r == rounds-1 {
					prof = fmt.Sprintf("%s-%s-%s.pprof", p, dev, test)
				}
				res, err := iperf(run, test, secs, prof)
				if err != nil {
					t.Fatalf("%s %s: %v", dev, test, err)
				}
				t.Logf("round %d %s %s: %+v", r+1, dev, test, res)
				results[dev+" "+test] = append(results[dev+" "+test], res)
			}
			run.Stop()
		}
	}
	t.Logf("medians of %d rounds:", rounds)
	for _, test := range tests {
		for _, dev := range devices {
			rs := results[dev+" "+test]
			med := func(f func(iperfResult) float64) float64 {
				v := make([]float64, len(rs))
				for i, r := range rs {
					v[i] = f(r)
				}
				slices.Sort(v)
				return v[len(v)/2]
			}
			cpu := med(func(r iperfResult) float64 { return r.gatewayCPUPct })
			if test == "rr" {
				t.Logf("%-6s %-5s %.0f round trips/s, p50 %.0f us, p99 %.0f us, gateway CPU %.0f %%", test, dev,
					med(func(r iperfResult) float64 { return r.rrPerSec }), med(func(r iperfResult) float64 { return r.p50us }),
					med(func(r iperfResult) float64 { return r.p99us }), cpu)
			} else if strings.HasPrefix(test, "udp") {
				t.Logf("%-6s %-5s sent %.0f pps, delivered %.0f pps, loss %.1f %%, gateway CPU %.0f %%", test, dev,
					med(func(r iperfResult) float64 { return r.sentPPS }), med(func(r iperfResult) float64 { return r.pps }),
					med(func(r iperfResult) float64 { return r.lossPct }), cpu)
			} else {
				t.Logf("%-6s %-5s %.2f Gbit/s, gateway CPU %.0f %%", test, dev, med(func(r iperfResult) float64 { return r.gbps }), cpu)
			}
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// startDeviceLab is startLab on the named device kind, without a pcap.
func startDeviceLab(t *testing.T, device string, pol policy.Policy) *gateway.Running {
	t.Helper()
	name := fmt.Sprintf("ip-%d", time.Now().UnixNano()%1e6)
	base, err := os.MkdirTemp("", "ig-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Cleanup(name, base); os.RemoveAll(base) })
	run, err := gateway.StartLab(context.Background(), lab.Config{Name: name, RunBase: base, Device: device}, pol, gateway.LabOptions{})
	if err != nil {
		t.Fatalf("StartLab %s on %s: %v", name, device, err)
	}
	t.Cleanup(func() { run.Stop() })
	return run
}

// iperf runs one iperf3 test from the client namespace to a fresh one-shot
// server in the server namespace.
func iperf(run *gateway.Running, test, secs, profile string) (iperfResult, error) {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return iperfResult{}, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if test == "rr" {
		return requestResponse(run, secs)
	}
	srv := exec.Command("ip", "netns", "exec", run.Lab.Server.Namespace, "iperf3", "-s", "-1")
	if err := srv.Start(); err != nil {
		return iperfResult{}, err
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	args := []string{"netns", "exec", run.Lab.Client.Namespace, "iperf3", "-c", lab.ServerAddr4.String(), "-t", secs, "-J"}
	switch test {
	case "tcp1":
	case "tcp4":
		args = append(args, "-P", "4")
	case "udp64":
		args = append(args, "-u", "-b", "0", "-l", "64")
	default:
		return iperfResult{}, fmt.Errorf("unknown test %q", test)
	}
	cpu0, t0 := processCPU(), time.Now()
	out, err := exec.Command("ip", args...).Output()
	cpu := (processCPU() - cpu0).Seconds() / time.Since(t0).Seconds() * 100
	if err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 %v: %v: %s", args, err, out)
	}
	var rep struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			Sum struct {
				Packets     float64 `json:"packets"`
				LostPackets float64 `json:"lost_packets"`
				LostPercent float64 `json:"lost_percent"`
				Seconds     float64 `json:"seconds"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 output: %v", err)
	}
	res := iperfResult{gbps: rep.End.SumReceived.BitsPerSecond / 1e9, gatewayCPUPct: cpu}
	if s := rep.End.Sum; test == "udp64" && s.Seconds > 0 {
		res = iperfResult{sentPPS: s.Packets / s.Seconds, pps: (s.Packets - s.LostPackets) / s.Seconds, lossPct: s.LostPercent, gatewayCPUPct: cpu}
	}
	return res, nil
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// requestResponse runs bench/rr (IDLEGATE_RR) for secs seconds: one connection,
// 64-byte messages.
func requestResponse(run *gateway.Running, secs string) (iperfResult, error) {
	bin := os.Getenv("IDLEGATE_RR")
	if bin == "" {
		return iperfResult{}, fmt.Errorf("set IDLEGATE_RR to a bench/rr binary")
	}
	addr := lab.ServerAddr4.String() + ":7000"
	srv := exec.Command("ip", "netns", "exec", run.Lab.Server.Namespace, bin, "server", "-listen", addr)
	if err := srv.Start(); err != nil {
		return iperfResult{}, err
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	cpu0, t0 := processCPU(), time.Now()
	out, err := exec.Command("ip", "netns", "exec", run.Lab.Client.Namespace, bin, "client", "-connect", addr,
		"-size", "64", "-conns", "1", "-duration", secs+"s").Output()
	cpu := (processCPU() - cpu0).Seconds() / time.Since(t0).Seconds() * 100
	if err != nil {
		return iperfResult{}, fmt.Errorf("rr: %v: %s", err, out)
	}
	var r struct {
		PerSec float64 `json:"per_sec"`
		P50us  float64 `json:"p50_us"`
		P99us  float64 `json:"p99_us"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return iperfResult{}, fmt.Errorf("rr output %q: %v", out, err)
	}
	return iperfResult{rrPerSec: r.PerSec, p50us: r.P50us, p99us: r.P99us, gatewayCPUPct: cpu}, nil
}
