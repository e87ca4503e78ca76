package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/internal/pkttest"
	"github.com/idlegate/idlegate/internal/version"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// memGateway is a gateway between two in-memory devices with policy pol, running
// until the test ends, and serving its control API on a unix socket; log, if not
// nil, gets its log.
func memGateway(t *testing.T, pol policy.Policy, log io.Writer) (*Gateway, *control.Client, [2]*tun.ChannelDevice) {
	t.Helper()
	eng, err := policy.NewEngine(pol)
	if err != nil {
		t.Fatal(err)
	}
	devs := [2]*tun.ChannelDevice{tun.NewChannel("inside", 0), tun.NewChannel("outside", 0)}
	cfg := Config{Inside: devs[0], Outside: devs[1], Engine: eng}
	if log != nil {
		cfg.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gw-") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, SocketFile)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.Run(ctx) }()
	ln, err := listenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { defer wg.Done(); g.serve(ctx, ln, g.handler()) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		os.RemoveAll(dir)
	})
	return g, control.New(sock), devs
}

// TestOpenAPIRoutes: the checked-in OpenAPI document lists every route the gateway
// serves, and nothing else.
func TestOpenAPIRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(control.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	g := &Gateway{}
	var served []string
	for _, r := range g.routes() {
		served = append(served, r.method+" "+r.path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("the gateway serves %s, which openapi.json does not document", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("openapi.json documents %s, which the gateway does not serve", r)
		}
	}
	if len(served) < 16 {
		t.Errorf("only %d routes: %v", len(served), served)
	}
}

// TestAPIErrorsAreJSON: every error, 404 and 405 included, is one JSON sentence.
func TestAPIErrorsAreJSON(t *testing.T) {
	eng, err := policy.NewEngine(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Inside: tun.NewChannel("i", 0), Outside: tun.NewChannel("o", 0), Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	h := g.handler()
	for _, c := range []struct {
		method, target, body string
		status               int
		want                 string
	}{
		{"GET", "/nope", "", 404, "no such route /nope"},
		{"GET", "/v1", "", 404, "no such route"},
		{"PUT", "/v1/stats", "", 405, "PUT /v1/stats is not served: the methods of /v1/stats are GET, HEAD"},
		{"POST", "/v1/conntrack", "", 405, "the methods of /v1/conntrack are GET, DELETE, PATCH, HEAD"},
		{"GET", "/v1/conntrack?dport=http", "", 400, `dport=http: "http" is not a port number from 1 to 65535`},
		{"GET", "/v1/conntrack?port=80", "", 400, `unknown query parameter "port"`},
		{"GET", "/v1/conntrack?proto=udp&state=ESTABLISHED", "", 400, "a state picks TCP connections"},
		{"DELETE", "/v1/conntrack", "", 400, "DELETE /v1/conntrack needs a filter"},
		{"POST", "/v1/conntrack/expire?event=NEW", "", 400, "event= picks event types, for GET /v1/events only"},
		{"PATCH", "/v1/conntrack?id=1", `{"timeout_s": -1}`, 400, `body must be JSON like {"timeout_s": 30}`},
		{"PATCH", "/v1/conntrack?id=1", `{"timeout": "1s"}`, 400, `body must be JSON like {"timeout_s": 30}`},
		{"POST", "/v1/policy", `{"set": ["timeouts.tcp.establshed=1s"]}`, 400, `unknown key "establshed"`},
		{"POST", "/v1/policy", `{"set": ["capacity=5"]}`, 409, "capacity cannot change while the gateway runs"},
		{"POST", "/v1/policy", `nonsense`, 400, `body must be JSON like {"set": ["orphan=reset"]}`},
		{"POST", "/v1/pcap?state=ESTABLISHED", `{"path": "/tmp/x.pcapng"}`, 400, "a capture filter takes a protocol, addresses and ports"},
		{"GET", "/v1/policy?format=xml", "", 400, "format= is json or yaml"},
		{"GET", "/v1/events?event=EXPIRE", "", 400, `"EXPIRE" is not an event type`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.target, strings.NewReader(c.body)))
		var e struct {
			Error string `json:"error"`
		}
		if rec.Code != c.status || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &e) != nil {
			t.Errorf("%s %s: %d %s %q; want %d and a JSON error", c.method, c.target, rec.Code, rec.Header().Get("Content-Type"), rec.Body, c.status)
			continue
		}
		if !strings.Contains(e.Error, c.want) {
			t.Errorf("%s %s: error %q, want it to contain %q", c.method, c.target, e.Error, c.want)
		}
		if c.status == 405 && rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without an Allow header", c.method, c.target)
		}
	}
}

// TestMetricsLint: /metrics has the gateway's metrics, idlegate_build_info and the
// Go and process collectors, promlint finds nothing, and neither does `promtool
// check metrics` where promtool is installed (deps.sh installs it; CI must have it).
func TestMetricsLint(t *testing.T) {
	_, c, devs := memGateway(t, policy.Default(), nil)
	// Some traffic, so that the labelled counters have values.
	q := pkttest.UDP(t, netip.MustParseAddrPort("198.18.0.2:5353"), netip.MustParseAddrPort("198.19.0.2:53"), "query")
	devs[0].Inbound <- q
	<-devs[1].Outbound
	page, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	text := string(page)
	for _, want := range []string{
		"\nidlegate_conntrack_capacity 262144\n",
		"\nidlegate_conntrack_entries 1\n",
		`idlegate_bytes_total{side="inside",verdict="forward"} ` + strconv.Itoa(len(q)) + "\n",
		`idlegate_conntrack_destroyed_total{reason="deleted"} 0`,
		`idlegate_build_info{goversion="go`,
		"\ngo_goroutines ",
		"\nprocess_cpu_seconds_total ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	problems, err := promlint.New(bytes.NewReader(page)).Lint()
	if err != nil {
		t.Fatalf("promlint cannot parse /metrics: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed, and CI must run it: deps.sh installs the Debian package prometheus")
		}
		t.Log("promtool is not installed (Debian package prometheus); promlint's check above stands alone")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestVersionRoute: GET /v1/version is the build's stamp.
func TestVersionRoute(t *testing.T) {
	_, c, _ := memGateway(t, policy.Default(), nil)
	v, err := c.Version(context.Background())
	if err != nil || v != version.Get() || v.Version == "" {
		t.Errorf("GET /v1/version = %+v, %v; want %+v", v, err, version.Get())
	}
}

// TestPolicySetScaled: on a scaled lab a policy change is in real units: the engine
// runs it scaled, and the view shows both.
func TestPolicySetScaled(t *testing.T) {
	real := policy.Default()
	run, err := real.Scale(0.01)
	if err != nil {
		t.Fatal(err)
	}
	g, c, _ := memGateway(t, run, nil)
	g.setLab(control.Lab{Name: "scaled", PolicyView: control.PolicyView{Profile: "linux-conntrack", TimeScale: 0.01, Policy: real}})
	v, err := c.SetPolicy(context.Background(), "timeouts.tcp.established=350s", "orphan=reset")
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(g.cfg.Engine.Policy().Timeouts.TCP.Established); got != 3500*time.Millisecond {
		t.Errorf("the engine runs established %v, want 3.5s (350s x 0.01)", got)
	}
	if time.Duration(v.Policy.Timeouts.TCP.Established) != 350*time.Second || time.Duration(v.InForce.Timeouts.TCP.Established) != 3500*time.Millisecond {
		t.Errorf("view: policy %v, in force %v; want 350s and 3.5s", v.Policy.Timeouts.TCP.Established, v.InForce.Timeouts.TCP.Established)
	}
	if v.Policy.Orphan != policy.OrphanReset || v.InForce.Orphan != policy.OrphanReset {
		t.Errorf("orphan: %v / %v, want reset in both", v.Policy.Orphan, v.InForce.Orphan)
	}
	// Keys not set keep their real values: udp stays 30s real, 300ms in force.
	l, err := c.Lab(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(l.Policy.Timeouts.UDP) != 30*time.Second || time.Duration(l.InForce.Timeouts.UDP) != 300*time.Millisecond || l.Profile != "linux-conntrack" {
		t.Errorf("GET /v1/lab: udp %v / %v, profile %q", l.Policy.Timeouts.UDP, l.InForce.Timeouts.UDP, l.Profile)
	}
}

// udpFlood sends n datagrams from n source ports through the inside device.
func udpFlood(t *testing.T, devs [2]*tun.ChannelDevice, n int, dport uint16) {
	t.Helper()
	for i := range n {
		src := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), uint16(10000+i))
		devs[0].Inbound <- pkttest.UDP(t, src, netip.AddrPortFrom(netip.MustParseAddr("198.19.0.2"), dport), "x")
		<-devs[1].Outbound
	}
}

// TestEventsLost: a reader that stops reading loses events, and is told: the events
// it receives plus the counts of its LOST records are every event there was.
func TestEventsLost(t *testing.T) {
	_, c, devs := memGateway(t, policy.Default(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := c.Events(ctx, control.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer evs.Close()
	const n = 20000 // far more than the subscriber's buffer and the socket's hold
	udpFlood(t, devs, n, 53)
	var got, lost, records uint64
	for got+lost < n {
		ev, err := evs.Next()
		if err != nil {
			t.Fatalf("after %d events and %d lost: %v", got, lost, err)
		}
		switch ev.Type {
		case control.EventLost:
			lost += ev.Lost
			records++
		case "NEW":
			got++
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if lost == 0 || records == 0 || got+lost != n {
		t.Errorf("received %d, lost %d in %d LOST records; want some lost and %d in all", got, lost, records, n)
	}
}

// TestEventsFilterAndVerdicts: a stream gets the events its filter picks, and
// VERDICT events when it asks for them, with verdict_events off; a stream that did
// not ask gets none.
func TestEventsFilterAndVerdicts(t *testing.T) {
	_, c, devs := memGateway(t, policy.Default(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var port53 control.Filter
	port53.Set("dport", "53")
	port53.Set("event", "NEW,VERDICT")
	picky, err := c.Events(ctx, port53)
	if err != nil {
		t.Fatal(err)
	}
	defer picky.Close()
	plain, err := c.Events(ctx, control.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	time.Sleep(50 * time.Millisecond) // both subscribed before the packets
	udpFlood(t, devs, 2, 54)
	udpFlood(t, devs, 1, 53)
	var types []string
	for len(types) < 2 {
		ev, err := picky.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Orig == nil || ev.Orig.DstPort != 53 {
			t.Fatalf("the dport=53 stream got %+v", ev)
		}
		types = append(types, ev.Type)
	}
	if !slices.Equal(types, []string{"NEW", "VERDICT"}) {
		t.Errorf("the dport=53 stream got %v, want NEW then VERDICT", types)
	}
	for range 3 {
		ev, err := plain.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "NEW" {
			t.Errorf("the plain stream got %s, want only NEW (no VERDICT without asking)", ev.Type)
		}
	}
}

// TestAuditLog: every change through the API is logged with who made it (the
// peer's uid, pid and command, from SO_PEERCRED) and what.
func TestAuditLog(t *testing.T) {
	var log syncBuffer
	_, c, devs := memGateway(t, policy.Default(), &log)
	udpFlood(t, devs, 1, 53)
	ctx := context.Background()
	if _, err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetPolicy(ctx, "orphan=reset"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, control.Filter{DPort: 53}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Conns(ctx, control.Filter{}); err != nil { // a read: not logged
		t.Fatal(err)
	}
	me := "peer_uid=" + strconv.Itoa(os.Getuid()) + " peer_pid=" + strconv.Itoa(os.Getpid())
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	var changes []string
	for _, l := range lines {
		if strings.Contains(l, `msg="api change"`) {
			changes = append(changes, l)
		}
	}
	if len(changes) != 3 {
		t.Fatalf("%d api change lines, want 3 (flush, policy set, delete):\n%s", len(changes), log.String())
	}
	for i, want := range []string{"what=flush", `what="policy set"`, "what=delete"} {
		if !strings.Contains(changes[i], want) || !strings.Contains(changes[i], me) || !strings.Contains(changes[i], "time=") {
			t.Errorf("log line %q: want %s, %s and its time", changes[i], want, me)
		}
	}
	if !strings.Contains(changes[1], `set="orphan=reset"`) || !strings.Contains(changes[2], `filter="dport=53"`) {
		t.Errorf("log lines do not say what changed:\n%s\n%s", changes[1], changes[2])
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPcapFilter: a recording with a filter holds the packets of the flows it picks,
// both directions, and nothing else; GET /v1/pcap says what is recorded.
func TestPcapFilter(t *testing.T) {
	_, c, devs := memGateway(t, policy.Default(), nil)
	path := filepath.Join(t.TempDir(), "dns.pcapng")
	ctx := context.Background()
	var f control.Filter
	f.Set("proto", "udp")
	f.Set("dport", "53")
	if _, err := c.StartPcap(ctx, path, false, f); err != nil {
		t.Fatal(err)
	}
	cli := netip.MustParseAddrPort("198.18.0.2:5353")
	dns := netip.MustParseAddrPort("198.19.0.2:53")
	other := netip.MustParseAddrPort("198.19.0.2:54")
	devs[0].Inbound <- pkttest.UDP(t, cli, dns, "query")
	<-devs[1].Outbound
	devs[1].Inbound <- pkttest.UDP(t, dns, cli, "answer")
	<-devs[0].Outbound
	devs[0].Inbound <- pkttest.UDP(t, cli, other, "not this")
	<-devs[1].Outbound
	info, err := c.Pcap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Recording || info.Path != path || info.Filter != "proto=udp dport=53" || info.Started.IsZero() {
		t.Errorf("GET /v1/pcap = %+v", info)
	}
	if _, err := c.StopPcap(ctx); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rd, err := capture.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var ports []uint16
	for {
		var rec capture.Record
		if err := rd.Next(&rec); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var pi struct{ sport, dport uint16 }
		b := rec.Data
		pi.sport, pi.dport = uint16(b[20])<<8|uint16(b[21]), uint16(b[22])<<8|uint16(b[23])
		ports = append(ports, pi.sport, pi.dport)
	}
	if !slices.Equal(ports, []uint16{5353, 53, 53, 5353}) {
		t.Errorf("the recording holds packets with ports %v, want the query and the answer of port 53 only", ports)
	}
	info, err = c.Pcap(ctx)
	if err != nil || info.Recording {
		t.Errorf("after stop, GET /v1/pcap = %+v, %v", info, err)
	}
}
