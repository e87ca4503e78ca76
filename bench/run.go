package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// Config is one benchmark run.
type Config struct {
	Rounds   int           // rounds per path, each running every test once
	Duration time.Duration // of each iperf3 and rr test; iperf3 takes whole seconds
	// Flows is the idlegate table's capacity and so the flood's target; the
	// kernel's flood stops at its nf_conntrack_max if that is lower.
	Flows      int
	FloodLimit time.Duration // longest flood
	MTU        int           // of both paths
	// Device forces the lab's TUN device (lab.DeviceFast, lab.DeviceWater); ""
	// takes the lab's own choice.
	Device       string
	LabName      string // the lab's name (its namespaces are NAME-client, NAME-server)
	KernelPrefix string // the kernel topology's namespaces are PREFIX-client, -router, -server
	RR           string // the rr binary
	Iperf3       string // the iperf3 binary
	Log          io.Writer
}

// Ports of the servers in each server namespace.
const (
	iperfPort = 5201
	rrPort    = 7000
)

// path is one way from the client namespace to the server namespace.
type path struct {
	name               string // "idlegate" or "kernel"
	clientNS, serverNS string
	clientLink         string
	count              func() (int, error)   // entries in its connection table
	flush              func() error          // forget every connection
	floodTarget        func(base int) int    // flows the flood adds to base
	memBefore, memNow  func() (int64, error) // for bytes per tracked flow
	rss                func() (int64, error) // the gateway's resident memory; nil for the kernel
}

// Samples are one path's measurements, by metric, one per round.
type Samples map[string][]float64

// Result is a finished run.
type Result struct {
	Env      Env
	Idlegate Samples
	Kernel   Samples
	Notes    []string
}

// Run builds both paths, runs Rounds rounds and tears everything down, also
// when ctx is cancelled.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark builds network namespaces: run it as root")
	}
	for _, bin := range []*string{&cfg.Iperf3, &cfg.RR} {
		p, err := exec.LookPath(*bin)
		if err != nil {
			return nil, fmt.Errorf("%s not found (%v): `make bench` installs iperf3 through deps.sh and builds bin/rr", *bin, err)
		}
		*bin = p
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	res = &Result{Idlegate: Samples{}, Kernel: Samples{}}

	// 1. The lab, with a table of cfg.Flows entries and UDP timeouts long enough
	// that no flood entry expires during the flood.
	pol := policy.Default()
	pol.Capacity = cfg.Flows
	pol.Timeouts.UDP = policy.Duration(10 * time.Minute)
	labCfg := lab.Config{Name: cfg.LabName, MTU: cfg.MTU, Device: cfg.Device}
	fmt.Fprintf(log, "bench: lab %s up (MTU %d, capacity %d)\n", cfg.LabName, cfg.MTU, cfg.Flows)
	run, err := gateway.StartLab(ctx, labCfg, pol, gateway.LabOptions{})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer func() { err = errors.Join(err, run.Stop()) }()

	// 2. The kernel topology.
	fmt.Fprintf(log, "bench: kernel topology %s-{client,router,server} up\n", cfg.KernelPrefix)
	k, err := UpKernel(KernelConfig{Prefix: cfg.KernelPrefix, MTU: cfg.MTU, UDPTimeout: 10 * time.Minute})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, k.Down()) }()
	ctRead, ctFile, err := k.ConntrackCounter()
	if err != nil {
		return nil, err
	}
	defer ctFile.Close()
	ctMax, err := k.ConntrackMax()
	if err != nil {
		return nil, err
	}

	res.Env = environment(cfg, run.Lab.Device)

	var rssBase int64 // before the first flood, after a GC
	eng := run.Engine
	ig := &path{
		name: "idlegate", clientNS: run.Lab.Client.Namespace, serverNS: run.Lab.Server.Namespace,
		clientLink:  lab.LinkName,
		count:       func() (int, error) { return eng.Len(), nil },
		flush:       func() error { eng.Flush(time.Now()); return nil },
		floodTarget: func(base int) int { return cfg.Flows - base },
		memBefore: func() (int64, error) {
			if rssBase == 0 {
				runtime.GC()
				debug.FreeOSMemory()
				var err error
				rssBase, err = vmRSS()
				return rssBase, err
			}
			return rssBase, nil
		},
		memNow: vmRSS,
		rss:    vmRSS,
	}
	kp := &path{
		name: "kernel", clientNS: k.Client, serverNS: k.Server, clientLink: KernelLink,
		count: ctRead,
		flush: k.FlushConntrack,
		floodTarget: func(base int) int {
			// nf_conntrack_max bounds each namespace's table and only the initial
			// namespace may change it; early drop keeps the count just below it.
			return min(cfg.Flows, ctMax-64) - base
		},
		memBefore: conntrackSlab,
		memNow:    conntrackSlab,
	}
	if ctMax < cfg.Flows {
		res.Notes = append(res.Notes, fmt.Sprintf("The kernel's flood stops at its nf_conntrack_max (%d): a namespace cannot raise it, and the benchmark leaves the host's value alone.", ctMax))
	}
	paths := []*path{ig, kp}

	// 3. Servers, flood sinks and flood source addresses on both paths.
	sources := FloodSources(cfg.Flows)
	for _, p := range paths {
		for _, argv := range [][]string{
			{cfg.Iperf3, "-s", "-B", lab.ServerAddr4.String(), "-p", strconv.Itoa(iperfPort)},
			{cfg.RR, "server", "-listen", netip.AddrPortFrom(lab.ServerAddr4, rrPort).String()},
		} {
			port := iperfPort
			if argv[0] == cfg.RR {
				port = rrPort
			}
			s, err := startServer(p.serverNS, port, argv...)
			if err != nil {
				return nil, err
			}
			defer s.stop()
		}
		sink, err := FloodSink(p.serverNS, lab.ServerAddr4)
		if err != nil {
			return nil, err
		}
		defer sink.Close()
		if err := AddAddrs(p.clientNS, p.clientLink, sources); err != nil {
			return nil, err
		}
	}

	// 4. Rounds: every test on both paths, the first path alternating.
	tests := []struct {
		name string
		run  func(context.Context, *path) (map[string]float64, error)
	}{
		{"tcp1", func(ctx context.Context, p *path) (map[string]float64, error) { return iperfTCP(ctx, cfg, p, 1) }},
		{"tcp4", func(ctx context.Context, p *path) (map[string]float64, error) { return iperfTCP(ctx, cfg, p, 4) }},
		{"udp64", func(ctx context.Context, p *path) (map[string]float64, error) { return iperfUDP(ctx, cfg, p) }},
		{"rr", func(ctx context.Context, p *path) (map[string]float64, error) { return requestResponse(ctx, cfg, p) }},
		{"flood", func(ctx context.Context, p *path) (map[string]float64, error) {
			return flood(ctx, cfg, p, sources)
		}},
	}
	for r := range cfg.Rounds {
		order := paths
		if r%2 == 1 {
			order = []*path{kp, ig}
		}
		for _, t := range tests {
			for _, p := range order {
				if err := ctx.Err(); err != nil {
					return res, err
				}
				m, err := t.run(ctx, p)
				if err != nil {
					return res, fmt.Errorf("round %d, %s on %s: %w", r+1, t.name, p.name, err)
				}
				samples := res.Idlegate
				if p == kp {
					samples = res.Kernel
				}
				var parts []string
				for _, row := range Rows {
					if v, ok := m[row.Key]; ok {
						samples[row.Key] = append(samples[row.Key], v)
						parts = append(parts, fmt.Sprintf("%s %s", formatValue(v), row.Unit))
					}
				}
				fmt.Fprintf(log, "round %d/%d  %-6s %-8s  %s\n", r+1, cfg.Rounds, t.name, p.name, strings.Join(parts, ", "))
			}
		}
	}
	return res, nil
}

// iperfResult is the part of `iperf3 -J` the benchmark reads. In the client's
// output, sum_received holds the receiver's view (iperf3 ≥ 3.1).
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Packets       int64   `json:"packets"`
			LostPackets   int64   `json:"lost_packets"`
			LostPercent   float64 `json:"lost_percent"`
		} `json:"sum_received"`
	} `json:"end"`
}

func iperfSeconds(d time.Duration) int { return max(1, int((d+time.Second/2)/time.Second)) }

func iperf(ctx context.Context, cfg Config, p *path, extra ...string) (*iperfResult, error) {
	secs := iperfSeconds(cfg.Duration)
	argv := append([]string{cfg.Iperf3, "-c", lab.ServerAddr4.String(), "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(secs), "-J", "--connect-timeout", "3000"}, extra...)
	out, err := runIn(ctx, p.clientNS, time.Duration(secs)*time.Second+30*time.Second, argv...)
	var r iperfResult
	if jerr := json.Unmarshal(out, &r); jerr == nil && r.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", r.Error)
	} else if err != nil {
		return nil, err
	} else if jerr != nil {
		return nil, fmt.Errorf("iperf3 output: %w", jerr)
	}
	if r.End.SumReceived.Seconds <= 0 {
		return nil, errors.New("iperf3 reported no receiver time")
	}
	return &r, nil
}

func iperfTCP(ctx context.Context, cfg Config, p *path, streams int) (map[string]float64, error) {
	r, err := iperf(ctx, cfg, p, "-P", strconv.Itoa(streams))
	if err != nil {
		return nil, err
	}
	return map[string]float64{fmt.Sprintf("tcp%d", streams): r.End.SumReceived.BitsPerSecond / 1e9}, nil
}

func iperfUDP(ctx context.Context, cfg Config, p *path) (map[string]float64, error) {
	r, err := iperf(ctx, cfg, p, "-u", "-b", "0", "-l", "64")
	if err != nil {
		return nil, err
	}
	s := r.End.SumReceived
	return map[string]float64{
		"udp_pps":  float64(s.Packets-s.LostPackets) / s.Seconds / 1e3,
		"udp_loss": s.LostPercent,
	}, nil
}

// rrResult is bench/rr's output line.
type rrResult struct {
	PerSec float64 `json:"per_sec"`
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
}

func requestResponse(ctx context.Context, cfg Config, p *path) (map[string]float64, error) {
	out, err := runIn(ctx, p.clientNS, cfg.Duration+30*time.Second, cfg.RR, "client",
		"-connect", netip.AddrPortFrom(lab.ServerAddr4, rrPort).String(),
		"-size", "64", "-conns", "1", "-duration", cfg.Duration.String())
	if err != nil {
		return nil, err
	}
	var r rrResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("rr output %q: %w", out, err)
	}
	return map[string]float64{"rr_rate": r.PerSec, "rr_p50": r.P50us, "rr_p99": r.P99us}, nil
}

// flood fills the path's table from an empty one, then empties it again.
func flood(ctx context.Context, cfg Config, p *path, sources []netip.Addr) (map[string]float64, error) {
	if err := p.flush(); err != nil {
		return nil, err
	}
	base, err := p.count()
	if err != nil {
		return nil, err
	}
	target := p.floodTarget(base)
	mem0, err := p.memBefore()
	if err != nil {
		return nil, err
	}
	r, err := Flood(ctx, FloodConfig{
		ClientNS: p.clientNS, Sources: sources, Dst: netip.AddrPortFrom(lab.ServerAddr4, FloodPort),
		Target: target, Count: p.count, Limit: cfg.FloodLimit,
	})
	if err != nil {
		return nil, err
	}
	m := map[string]float64{"flood_rate": r.PerSec() / 1e3, "flood_flows": float64(r.Created)}
	if mem1, err := p.memNow(); err == nil && mem0 > 0 && r.Created > 0 {
		m["flood_bpf"] = float64(mem1-mem0) / float64(r.Created)
	}
	if p.rss != nil {
		if rss, err := p.rss(); err == nil {
			m["flood_rss"] = float64(rss) / (1 << 20)
		}
	}
	if err := p.flush(); err != nil {
		return nil, err
	}
	return m, nil
}

// vmRSS is this process's resident memory, where the lab's gateway runs.
func vmRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// conntrackSlab is the memory of the kernel's conntrack entries: the
// nf_conntrack slab's active objects times their size, for all namespaces.
// Extensions allocated beside an entry are not counted.
func conntrackSlab() (int64, error) {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) > 3 && fs[0] == "nf_conntrack" {
			active, err1 := strconv.ParseInt(fs[1], 10, 64)
			size, err2 := strconv.ParseInt(fs[3], 10, 64)
			return active * size, errors.Join(err1, err2)
		}
	}
	return 0, errors.New("no nf_conntrack slab in /proc/slabinfo")
}
