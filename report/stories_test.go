package report

// Namespace tests: each playbook story runs in a lab of its own, as `scenario run` runs
// it, with its capture kept; the report is made from the run:
//
//	 scNNNN-K-client netns          test process (root netns)           scNNNN-K-server netns
//	+------------------+        +-------------------------------+      +------------------+
//	| the story's      |<- TUN->| gateway: policy.Engine,       |<-TUN->| echo servers     |
//	| clients (agents) |        | capture kept in memory        |      |                  |
//	+------------------+        +-------------------------------+      +------------------+
//
// Then FromScenario replays the capture with the story's policy, and the tests read the
// model: which arrows, which bars, which reasons. scenarios.Run removes its lab.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/scenarios"
)

// needRoot skips a test that needs root, except in CI, where a skip would hide it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root for network namespaces, and CI must not skip it: run the tests as root")
	}
	t.Skip("needs root for network namespaces; run as root (CI=true makes this a failure)")
}

var (
	binOnce sync.Once
	binPath string
	binErr  error

	runsMu sync.Mutex
	runs   = map[string]*storyRun{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// buildBinary builds the idlegate binary that runs the agents, once.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "idlegate-report-test-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "idlegate")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		if out, err := exec.Command(goTool, "build", "-o", binPath, "../cmd/idlegate").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build idlegate: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// storyRun is one played story, shared by the tests that read it.
type storyRun struct {
	once sync.Once
	sc   *scenarios.Scenario
	rep  *scenarios.Report
	r    *Report
	err  error
}

// playStory plays a playbook story once per test binary and makes its report.
func playStory(t *testing.T, name string) (*scenarios.Report, *Report) {
	t.Helper()
	needRoot(t)
	bin := buildBinary(t)
	runsMu.Lock()
	sr := runs[name]
	if sr == nil {
		sr = &storyRun{}
		runs[name] = sr
	}
	runsMu.Unlock()
	sr.once.Do(func() {
		if sr.sc, sr.err = scenarios.Lookup(name); sr.err != nil {
			return
		}
		if sr.rep, sr.err = scenarios.Run(context.Background(), sr.sc, scenarios.Options{Binary: bin, Capture: true}); sr.err != nil {
			return
		}
		sr.r, sr.err = FromScenario(sr.sc, sr.rep)
	})
	if sr.err != nil {
		t.Fatal(sr.err)
	}
	if !sr.rep.Pass {
		var b strings.Builder
		sr.rep.WriteText(&b)
		t.Fatalf("the story itself failed; its report:\n%s", b.String())
	}
	if d := sr.r.Views[0].Disagreed; d != 0 {
		t.Errorf("the report's replay of the gateway's capture disagrees on %d packets: %q", d, sr.r.Notes)
	}
	return sr.rep, sr.r
}

// connsTo are the connections to a server port.
func connsTo(v *View, port string) []int {
	var out []int
	for i, c := range v.Conns {
		if f := strings.Fields(c.Short); len(f) >= 4 && f[2] == "→" && f[3] == port {
			out = append(out, i)
		}
	}
	return out
}

func peakFill(c *Conn) float64 {
	p := 0.0
	for _, r := range c.Timer.Ramps {
		p = max(p, r.Fill())
	}
	return p
}

// arrowsOf are a connection's arrows.
func arrowsOf(v *View, conn int, match func(a *Arrow) bool) []Arrow {
	return find(v, func(a *Arrow) bool { return a.Conn == conn && match(a) })
}

func TestStoryIdleReset(t *testing.T) {
	t.Parallel()
	rep, r := playStory(t, "idle-reset")
	v := &r.Views[0]
	if r.Story == nil || !r.Story.Pass || r.Story.Concept == "" || r.Story.Fix == "" || len(r.Story.Checks) != len(rep.Checks) {
		t.Fatalf("story %+v", r.Story)
	}
	cs := connsTo(v, ":7000")
	if len(cs) != 1 {
		t.Fatalf("%d connections to :7000, want 1: %+v", len(cs), v.Conns)
	}
	c := &v.Conns[cs[0]]
	// The bar: fills from the last packet to the 3 s deadline, and the entry dies there.
	if c.End == nil || c.End.Reason != conntrack.ReasonExpired || c.End.Timeout.Seconds() != 3 || c.End.Idle != c.End.Timeout {
		t.Fatalf("end %+v, want expired after 3s idle, timeout 3s", c.End)
	}
	if lr := lastRamp(c); !near(lr.Fill(), 1) || lr.State != "ESTABLISHED" || lr.To != c.End.At {
		t.Errorf("last ramp %+v: want ESTABLISHED, full at the death", lr)
	}
	// The arrows: a handshake across, data, the late write dropped at idlegate as an
	// orphan with a RST sent back from there, after the death.
	first := arrowsOf(v, cs[0], func(a *Arrow) bool { return true })
	if len(first) < 6 || first[0].Label != "SYN" || first[0].Kind != Crossed || first[0].From != Client || first[0].To != Server {
		t.Fatalf("arrows %+v: want a handshake first", first)
	}
	late := arrowsOf(v, cs[0], func(a *Arrow) bool {
		return a.Kind == Dropped && a.From == Client && a.Verdict == policy.Reset.String() && a.Reason == policy.ReasonOrphan.String()
	})
	if len(late) != 1 || late[0].At < c.End.At || !strings.Contains(late[0].Label, "PSH") || late[0].Bytes != 6 {
		t.Fatalf("dropped late writes %+v, want one 6-byte write after the death at %v", late, c.End.At)
	}
	rst := arrowsOf(v, cs[0], func(a *Arrow) bool {
		return a.Kind == Injected && a.From == Gateway && a.To == Client && a.Label == "RST" && a.Reason == policy.ReasonOrphan.String()
	})
	if len(rst) != 1 || rst[0].At != late[0].At {
		t.Errorf("RSTs to the client %+v, want one at the late write", rst)
	}
	// The client said ECONNRESET, on its lifeline.
	said := false
	for _, n := range v.Sequence.Notes {
		said = said || n.On == Client && n.Alarm && strings.Contains(n.Text, "ECONNRESET")
	}
	if !said {
		t.Error("no alarm note with ECONNRESET on the client's lifeline")
	}
}

func TestStoryTCPKeepaliveSaves(t *testing.T) {
	t.Parallel()
	_, r := playStory(t, "tcp-keepalive-saves")
	v := &r.Views[0]
	cs := connsTo(v, ":7000")
	if len(cs) != 2 {
		t.Fatalf("%d connections to :7000, want 2 (ka and bare)", len(cs))
	}
	var ka, bare = -1, -1
	for _, i := range cs {
		if len(v.Conns[i].Timer.Probes) > 0 {
			ka = i
		} else {
			bare = i
		}
	}
	if ka < 0 || bare < 0 {
		t.Fatalf("no connection with probes and one without: %+v", v.Conns)
	}
	k := &v.Conns[ka]
	if len(k.Timer.Probes) < 5 {
		t.Errorf("%d probes on ka's timer, want at least 5", len(k.Timer.Probes))
	}
	for _, p := range k.Timer.Probes {
		if !p.Refreshed {
			t.Errorf("ka's probe at %v did not refresh (refresh any)", p.At)
		}
	}
	if pk := peakFill(k); pk >= 0.6 {
		t.Errorf("ka's timer reached %.2f: probes every 1s keep a 3s timer near 1/3", pk)
	}
	if k.End != nil && k.End.Reason == conntrack.ReasonExpired {
		t.Errorf("ka's entry expired: %+v", k.End)
	}
	probes := arrowsOf(v, ka, func(a *Arrow) bool { return a.Keepalive && a.Kind == Crossed && a.From == Client })
	if len(probes) != len(k.Timer.Probes) {
		t.Errorf("%d probe arrows, %d probes on the timer", len(probes), len(k.Timer.Probes))
	}
	b := &v.Conns[bare]
	if b.End == nil || b.End.Reason != conntrack.ReasonExpired || !near(lastRamp(b).Fill(), 1) {
		t.Errorf("bare's end %+v, last ramp %+v: want expired at a full timer", b.End, lastRamp(b))
	}
	if len(arrowsOf(v, bare, func(a *Arrow) bool { return a.Kind == Dropped && a.Reason == policy.ReasonOrphan.String() })) == 0 {
		t.Error("bare's late write is not dropped as an orphan")
	}
}

func TestStoryTableFullLRU(t *testing.T) {
	t.Parallel()
	_, r := playStory(t, "table-full-lru")
	v := &r.Views[0]
	o := v.Occupancy
	if o.Capacity != 10 || o.Peak != 10 || o.Evicted < 10 || len(o.Evictions) != o.Evicted || o.Refused != 0 {
		t.Errorf("occupancy capacity %d peak %d evicted %d (%d marks) refused %d: want 10, 10, >= 10, all marked, 0 (evict-lru makes room)",
			o.Capacity, o.Peak, o.Evicted, len(o.Evictions), o.Refused)
	}
	cs := connsTo(v, ":7000")
	if len(cs) != 2 {
		t.Fatalf("%d connections to :7000, want 2 (idler and keeper)", len(cs))
	}
	var idler, keeper *Conn
	for _, i := range cs {
		if len(v.Conns[i].Timer.Probes) > 0 {
			keeper = &v.Conns[i]
		} else {
			idler = &v.Conns[i]
			if late := arrowsOf(v, i, func(a *Arrow) bool { return a.Kind == Dropped && a.Reason == policy.ReasonOrphan.String() }); len(late) == 0 {
				t.Error("the idler's write after its eviction is not an orphan")
			}
		}
	}
	if idler == nil || keeper == nil {
		t.Fatal("no idler and keeper")
	}
	if idler.End == nil || idler.End.Reason != conntrack.ReasonEvicted {
		t.Errorf("idler's end %+v, want evicted", idler.End)
	}
	if keeper.End != nil && keeper.End.Reason == conntrack.ReasonEvicted {
		t.Errorf("the keeper was evicted: %+v", keeper.End)
	}
	for _, e := range o.Evictions {
		if e < 0 || e > r.Duration {
			t.Errorf("eviction at %v outside the run", e)
		}
	}
}

func TestStoryNATRemap(t *testing.T) {
	t.Parallel()
	_, r := playStory(t, "nat-remap")
	v := &r.Views[0]
	// Three entries to :7000: client, keeper, and the client's picked-up remap.
	cs := connsTo(v, ":7000")
	if len(cs) != 3 {
		t.Fatalf("%d connections to :7000, want 3", len(cs))
	}
	ports := map[string]bool{}
	for _, i := range cs {
		name := v.Conns[i].Name
		if !strings.Contains(name, "(nat 198.19.0.1:") {
			t.Errorf("connection %q does not name its NAT mapping", name)
		}
		ports[name[strings.Index(name, "(nat"):]] = true
	}
	if len(ports) != 3 {
		t.Errorf("mappings %v, want three different outside ports (the remap is new)", ports)
	}
	syns := find(v, func(a *Arrow) bool { return a.Label == "SYN" && a.Kind == Crossed })
	for _, a := range syns {
		if !strings.HasPrefix(a.NAT, "198.18.0.2:") || !strings.Contains(a.NAT, "→ 198.19.0.1:") {
			t.Errorf("SYN's NAT %q, want inside → 198.19.0.1:port", a.NAT)
		}
	}
	pick := find(v, func(a *Arrow) bool { return a.Reason == policy.ReasonPickup.String() && a.Kind == Crossed })
	if len(pick) == 0 {
		t.Fatal("no arrow picked up mid-stream")
	}
	if !strings.Contains(pick[0].NAT, "→ 198.19.0.1:") {
		t.Errorf("the picked-up write's NAT %q", pick[0].NAT)
	}
	// The server's kernel answers the stranger with a RST, which crosses back.
	if rst := find(v, func(a *Arrow) bool { return a.Kind == Crossed && a.From == Server && strings.HasPrefix(a.Label, "RST") }); len(rst) == 0 {
		t.Error("no RST from the server crosses back")
	}
}
