package report

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/policy"
)

// A capture too big to draw packet by packet: folded under MaxArrows, no packet lost
// from the counts, and the report says so.
func TestLargeCaptureFolds(t *testing.T) {
	g := newGW(t, mustPolicy(t, "timeouts.tcp.established", "30s"))
	var cs []*conv
	d := time.Duration(0)
	for i := range 40 {
		c := newConv(t, uint16(46000+i))
		cs = append(cs, c)
		d = g.open(c, d) + ms
	}
	for i := range 10000 {
		c := cs[i%len(cs)]
		d += 100 * time.Microsecond
		if i%2 == 0 {
			g.send(d, policy.Outbound, c.fromClient("x"))
		} else {
			g.send(d, policy.Inbound, c.serverAck())
		}
	}
	r := fromDouble(t, g, CaptureOptions{})
	s := &r.Views[0].Sequence
	if len(s.Arrows) > MaxArrows {
		t.Errorf("%d arrows, more than MaxArrows %d", len(s.Arrows), MaxArrows)
	}
	total, folded := 0, 0
	for _, a := range s.Arrows {
		total += a.Count
		if a.Count > 1 {
			folded += a.Count
		}
	}
	if want := s.Packets + s.Injected; total != want || s.Packets != 40*6+10000 {
		t.Errorf("arrows stand for %d packets, want %d (%d read)", total, want, s.Packets)
	}
	if folded == 0 || folded != s.Folded || s.FoldWindow <= 0 {
		t.Errorf("folded %d (sequence says %d, window %v)", folded, s.Folded, s.FoldWindow)
	}
	for i := 1; i < len(s.Arrows); i++ {
		if s.Arrows[i].At < s.Arrows[i-1].At {
			t.Fatalf("arrow %d at %v before arrow %d at %v", i, s.Arrows[i].At, i-1, s.Arrows[i-1].At)
		}
	}
	said := false
	for _, n := range r.Notes {
		said = said || strings.Contains(n, "folded into arrows marked ×N")
	}
	if !said {
		t.Errorf("the notes do not say the arrows are folded: %q", r.Notes)
	}
	if len(r.Views[0].Conns) != 40 || len(r.Views[0].Shown()) != MaxTimers {
		t.Errorf("%d connections, %d timers shown; want 40 and %d", len(r.Views[0].Conns), len(r.Views[0].Shown()), MaxTimers)
	}
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(buf.String(), `<g class="arrow `); got != len(s.Arrows) {
		t.Errorf("the page draws %d arrows, the model has %d", got, len(s.Arrows))
	}
}

func TestAxisBreaksLongGaps(t *testing.T) {
	pts := []time.Duration{0, ms, 2 * ms, 400 * time.Second, 400*time.Second + ms}
	ax := NewAxis(pts, 0, 400*time.Second+ms, 100, 800)
	if len(ax.Spans) != 3 || !ax.Spans[1].Gap {
		t.Fatalf("spans %+v, want cluster, gap, cluster", ax.Spans)
	}
	if w := ax.Spans[1].X1 - ax.Spans[1].X0; w != gapWidth {
		t.Errorf("gap %v px wide, want %d", w, gapWidth)
	}
	for _, i := range []int{0, 2} {
		if w := ax.Spans[i].X1 - ax.Spans[i].X0; w < minCluster {
			t.Errorf("cluster %d is %.1f px wide, want at least %d", i, w, minCluster)
		}
	}
	if end := ax.Spans[2].X1; end < 899.99 || end > 900.01 {
		t.Errorf("the axis ends at %v, want 900", end)
	}
	// Monotonic, and the handshake's millisecond visible.
	prev := -1.0
	for d := time.Duration(0); d <= 400*time.Second+ms; d += 250 * ms {
		x := ax.X(d)
		if x < prev {
			t.Fatalf("X(%v) = %v < X before %v", d, x, prev)
		}
		prev = x
	}
	if ax.X(ms)-ax.X(0) < 10 {
		t.Errorf("1 ms is %.1f px: not visible", ax.X(ms)-ax.X(0))
	}
	// A short story stays linear.
	lin := NewAxis([]time.Duration{0, 3 * time.Second, 5 * time.Second}, 0, 6*time.Second, 0, 600)
	if lin.Broken() || lin.X(3*time.Second) != 300 {
		t.Errorf("a 6 s axis is broken or not linear: %+v", lin.Spans)
	}
}

var external = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9]|<script|<link|<img|@import|url\((?:['"]?)(?:https?:|//)`)

// Every report is one file: nothing it loads from elsewhere, no script.
func TestHTMLIsSelfContained(t *testing.T) {
	g := newGW(t, mustPolicy(t, "timeouts.tcp.established", "3s", "orphan", "reset"))
	c := newConv(t, 44336)
	g.open(c, 0)
	g.send(5*time.Second, policy.Outbound, c.fromClient("again\n"))
	r := fromDouble(t, g, CaptureOptions{Title: "a <b>title</b> & more"})
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if m := external.FindString(page); m != "" {
		t.Errorf("the page refers to something outside itself: %q", m)
	}
	for _, want := range []string{`<!DOCTYPE html>`, `<style>`, `<svg class="seq"`, `data-lifeline="client"`, `data-lifeline="idlegate"`,
		`data-lifeline="server"`, `data-kind="dropped"`, `data-reason="orphan"`, `data-kind="injected"`, `a &lt;b&gt;title&lt;/b&gt; &amp; more`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "<b>title</b>") {
		t.Error("the title is not escaped")
	}
}
