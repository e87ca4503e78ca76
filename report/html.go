package report

import (
	"bufio"
	_ "embed"
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/replay"
)

//go:embed style.css
var styleCSS string

// WriteHTML writes the report as one self-contained HTML page: inline SVG and CSS,
// no script, nothing fetched.
func (r *Report) WriteHTML(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	p := &page{w: bw, r: r}
	p.write()
	return bw.Flush()
}

type page struct {
	w *bufio.Writer
	r *Report
}

func (p *page) s(s string)                { p.w.WriteString(s) }
func (p *page) f(format string, a ...any) { fmt.Fprintf(p.w, format, a...) }

// esc escapes text for HTML and SVG, content and attributes alike.
func esc(s string) string { return html.EscapeString(s) }

// num prints a pixel coordinate.
func num(x float64) string { return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64) }

func (p *page) write() {
	r := p.r
	p.s("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	p.s("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	p.f("<title>%s</title>\n<style>\n%s</style>\n</head>\n<body data-kind=\"%s\">\n", esc(r.Title), styleCSS, r.Kind)
	p.s("<header>\n")
	if st := r.Story; st != nil {
		cls := "fail"
		if st.Pass {
			cls = "pass"
		}
		p.f("<h1><span class=\"verdict %s\" id=\"verdict\">%s</span>%s</h1>\n", cls, esc(st.Verdict), esc(r.Title))
	} else {
		p.f("<h1>%s</h1>\n", esc(r.Title))
	}
	if r.Subtitle != "" {
		p.f("<p class=\"sub\">%s · %s</p>\n", esc(r.Subtitle), esc(fmtDur(r.Duration)))
	}
	p.nav()
	p.s("</header>\n")
	if r.Story != nil {
		p.story(r.Story)
	}
	if len(r.Notes) > 0 {
		p.s("<ul class=\"notes\" id=\"notes\">\n")
		for _, n := range r.Notes {
			p.f("<li>%s</li>\n", esc(n))
		}
		p.s("</ul>\n")
	}
	if r.Matrix != nil {
		p.matrix(r.Matrix)
	}
	for i := range r.Views {
		p.view(i)
	}
	if r.Live != nil {
		p.live(r.Live)
	}
	p.s("<footer>Made by <code>idlegate report</code> from ")
	p.s(esc(r.Kind.String()))
	p.s(" data. Times are offsets from the start; the gateway's own word (its capture comments and table events) gives every verdict and reason.</footer>\n")
	p.s("</body>\n</html>\n")
}

// nav links the page's sections.
func (p *page) nav() {
	r := p.r
	var links []string
	if r.Story != nil {
		links = append(links, `<a href="#story">story</a>`)
	}
	if r.Matrix != nil {
		links = append(links, `<a href="#matrix">flows x profiles</a>`)
	}
	for i, v := range r.Views {
		who := ""
		if len(r.Views) > 1 {
			who = esc(v.Name) + ": "
		}
		links = append(links, fmt.Sprintf(`%s<a href="#sequence-%d">sequence</a> · <a href="#timers-%d">timers</a> · <a href="#occupancy-%d">table</a>`, who, i, i, i))
	}
	if r.Live != nil {
		links = append(links, `<a href="#live">counters</a>`)
	}
	p.f("<nav class=\"muted\">%s</nav>\n", strings.Join(links, " | "))
}

func (p *page) story(st *Story) {
	p.s("<section id=\"story\">\n")
	if st.VerdictLine != "" {
		p.f("<p><b>%s</b></p>\n", esc(st.VerdictLine))
	}
	if st.Error != "" {
		p.f("<p class=\"muted\">the story could not be played to its end: %s</p>\n", esc(st.Error))
	}
	p.s("<div class=\"cards\">\n")
	for _, c := range []struct{ h, t string }{{"Concept", st.Concept}, {"Story", st.Tale}, {"Fix", st.Fix}} {
		if c.t == "" {
			continue
		}
		p.f("<div class=\"card\" id=\"%s\"><h3>%s</h3><p>%s</p></div>\n", strings.ToLower(c.h), c.h, esc(c.t))
	}
	p.s("</div>\n")
	if st.PolicySummary != "" {
		p.f("<p class=\"policy\">policy: %s</p>\n", esc(st.PolicySummary))
	}
	if len(st.Checks) > 0 {
		p.s("<h3>Expectations</h3>\n<ul class=\"checks\" id=\"expectations\">\n")
		for _, c := range st.Checks {
			cls, mark := "ok", "ok"
			if !c.Pass {
				cls, mark = "fail", "FAIL"
			}
			p.f("<li class=\"%s\"><span class=\"mark\">%s</span>%s: got %s", cls, mark, esc(c.Expect), esc(c.Got))
			if c.Why != "" {
				p.f(" <span class=\"muted\">(%s)</span>", esc(c.Why))
			}
			p.s("</li>\n")
		}
		p.s("</ul>\n")
	}
	if st.GatewayCounts != "" {
		p.f("<p class=\"muted\">gateway: %s</p>\n", esc(st.GatewayCounts))
	}
	for _, w := range st.Warnings {
		p.f("<p class=\"muted\">warning: %s</p>\n", esc(w))
	}
	p.s("</section>\n")
}

// view writes one view: sequence diagram, timers, occupancy. A replay's views after
// the first are folded away in <details>.
func (p *page) view(i int) {
	v := &p.r.Views[i]
	fold := p.r.Kind == FromReplayRun
	if fold {
		open := ""
		if i == 0 {
			open = " open"
		}
		p.f("<details class=\"view\" id=\"view-%d\"%s><summary>%s: what this box would have done</summary>\n", i, open, esc(v.Name))
	} else {
		p.f("<section class=\"view\" id=\"view-%d\">\n", i)
	}
	if v.Policy != "" && p.r.Story == nil {
		p.f("<p class=\"policy\">%s</p>\n", esc(v.Policy))
	}
	if v.Disagreed > 0 {
		p.f("<p class=\"muted\">%d packets: the replay's verdict differs from the gateway's (see the notes)</p>\n", v.Disagreed)
	}
	p.sequence(i, v)
	ax := p.viewAxis(v)
	p.timers(i, v, ax)
	p.occupancy(i, v, ax)
	if fold {
		p.s("</details>\n")
	} else {
		p.s("</section>\n")
	}
}

// Sequence diagram geometry.
const (
	seqW      = 1100
	xClient   = 240.0
	xGateway  = 565.0
	xServer   = 890.0
	headH     = 46
	arrowRowH = 26
	noteRowH  = 19
	breakRowH = 24
)

func lifelineX(l Lifeline) float64 {
	switch l {
	case Client:
		return xClient
	case Gateway:
		return xGateway
	}
	return xServer
}

// palette colours connections in the sequence diagram and their timers.
// Red, orange and purple are kept for drops, injections and keepalive probes.
var palette = [...]string{"#1f77b4", "#2ca02c", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#393b79", "#7f7f7f"}

func connColour(i int) string {
	if i < 0 {
		return "#8a93a0"
	}
	return palette[i%len(palette)]
}

// seqRow is one row of the sequence diagram: an arrow, a note, or a break.
type seqRow struct {
	kind  byte // 'a', 'n', 'b'
	idx   int
	at    time.Duration
	gap   time.Duration
	y     float64
	label string
}

func (p *page) sequence(vi int, v *View) {
	s := &v.Sequence
	p.f("<h3 id=\"sequence-%d\">Sequence: client | idlegate | server</h3>\n", vi)
	p.s(`<p class="legend"><span class="sw" style="background:#333c4a"></span>forwarded (the dot: idlegate saw it)` +
		`<span class="sw" style="background:#6a4fb3"></span>keepalive probe` +
		`<span class="sw" style="background:#c62828"></span>not forwarded: ends at idlegate with its verdict and reason` +
		`<span class="sw" style="background:#e8710a"></span>sent by idlegate itself</p>` + "\n")
	if len(s.Arrows) == 0 && len(s.Notes) == 0 {
		p.s("<p class=\"muted\">no packet crossed the gateway</p>\n")
		return
	}
	// Rows in time order: arrows, then notes at the same time; breaks in between.
	var rows []seqRow
	ai, ni := 0, 0
	for ai < len(s.Arrows) || ni < len(s.Notes) {
		if ni >= len(s.Notes) || ai < len(s.Arrows) && s.Arrows[ai].At <= s.Notes[ni].At {
			rows = append(rows, seqRow{kind: 'a', idx: ai, at: s.Arrows[ai].At})
			ai++
		} else {
			rows = append(rows, seqRow{kind: 'n', idx: ni, at: s.Notes[ni].At})
			ni++
		}
	}
	minBreak := max(100*time.Millisecond, p.r.Duration/400)
	out := make([]seqRow, 0, len(rows)*2)
	y := float64(headH)
	for i, row := range rows {
		if i > 0 {
			prev := rows[i-1].at
			if rows[i-1].kind == 'a' {
				prev = max(prev, s.Arrows[rows[i-1].idx].Until)
			}
			if g := row.at - prev; g >= minBreak {
				out = append(out, seqRow{kind: 'b', at: prev, gap: g, y: y})
				y += breakRowH
			}
		}
		row.y = y
		out = append(out, row)
		if row.kind == 'a' {
			y += arrowRowH
		} else {
			y += noteRowH
		}
	}
	height := y + 12
	p.f("<svg class=\"seq\" id=\"seq-%d\" width=\"%d\" height=\"%s\" viewBox=\"0 0 %d %s\" role=\"img\" aria-label=\"sequence diagram\">\n", vi, seqW, num(height), seqW, num(height))
	p.s(`<defs>` +
		`<marker id="ah" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#333c4a"/></marker>` +
		`<marker id="ah-ka" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#6a4fb3"/></marker>` +
		`<marker id="ah-inj" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#e8710a"/></marker>` +
		"</defs>\n")
	// Lifelines and their heads.
	for _, l := range []Lifeline{Client, Gateway, Server} {
		x := lifelineX(l)
		cls := "lifeline"
		if l == Gateway {
			cls += " gateway"
		}
		p.f("<line class=\"%s\" data-lifeline=\"%s\" x1=\"%s\" y1=\"%d\" x2=\"%s\" y2=\"%s\"/>\n", cls, l, num(x), headH-8, num(x), num(height-4))
	}
	for _, l := range []Lifeline{Client, Gateway, Server} {
		x := lifelineX(l)
		cls := "head"
		if l == Gateway {
			cls += " gateway"
		}
		p.f("<g class=\"%s\" data-lifeline=\"%s\"><rect x=\"%s\" y=\"6\" width=\"120\" height=\"28\" rx=\"5\"/><text x=\"%s\" y=\"25\" text-anchor=\"middle\">%s</text></g>\n",
			cls, l, num(x-60), num(x), l)
	}
	for _, row := range out {
		switch row.kind {
		case 'b':
			p.f("<g class=\"brk\"><rect x=\"70\" y=\"%s\" width=\"%d\" height=\"%d\"/><text x=\"%s\" y=\"%s\" text-anchor=\"middle\">⋯ %s later ⋯</text></g>\n",
				num(row.y+3), seqW-80, breakRowH-6, num(xGateway), num(row.y+16), esc(fmtDur(row.gap)))
		case 'n':
			p.note(&s.Notes[row.idx], row.y)
		case 'a':
			p.arrow(v, &s.Arrows[row.idx], row.y)
		}
	}
	p.s("</svg>\n")
}

func (p *page) note(n *Note, y float64) {
	x := lifelineX(n.On)
	cls := "note " + n.On.String()
	if n.Alarm {
		cls += " alarm"
	}
	text := clip(n.Text, 110)
	w := float64(utf8.RuneCountInString(text))*6.2 + 8
	anchor, tx, rx := "start", x+9, x+5
	if n.On == Server {
		anchor, tx, rx = "end", x-9, x-5-w
	}
	cy := y + noteRowH/2
	p.f("<g class=\"%s\"><title>%s %s</title><rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"15\" rx=\"2\"/><circle cx=\"%s\" cy=\"%s\" r=\"3\" fill=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"%s\">%s</text><text class=\"t\" x=\"8\" y=\"%s\">%s</text></g>\n",
		cls, esc(fmtOff(n.At)), esc(n.Text), num(rx), num(cy-8), num(w), num(x), num(cy), noteDot(n), num(tx), num(cy+4), anchor, esc(text), num(cy+4), esc(fmtSec(n.At)))
}

func noteDot(n *Note) string {
	if n.Alarm {
		return "#c62828"
	}
	if n.On == Gateway {
		return "#2f5d9e"
	}
	return "#5b6472"
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// fmtSec prints an offset as seconds with milliseconds, signed: "+5.353s", "-0.002s".
func fmtSec(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
	if d >= 0 {
		return "+" + s
	}
	return s
}

// fmtOff prints an offset for people, signed: "+3s", "-2.3ms".
func fmtOff(d time.Duration) string {
	if d < 0 {
		return fmtDur(d)
	}
	return "+" + fmtDur(d)
}

func (p *page) arrow(v *View, a *Arrow, y float64) {
	x1, x2 := lifelineX(a.From), lifelineX(a.To)
	ly := y + 17 // the line
	cls := "arrow " + a.Kind.String()
	if a.Keepalive {
		cls += " keepalive"
	}
	if a.Count > 1 {
		cls += " folded"
	}
	marker := "ah"
	switch {
	case a.Kind == Injected || a.Kind == ExpiryReset:
		marker = "ah-inj"
	case a.Keepalive:
		marker = "ah-ka"
	}
	conn := ""
	if a.Conn >= 0 && a.Conn < len(v.Conns) {
		conn = v.Conns[a.Conn].Short
	}
	label := a.Label
	if a.Bytes > 0 {
		label += " " + fmtBytes(a.Bytes)
	}
	if a.Keepalive {
		label = "keepalive probe (" + label + ")"
	}
	if a.Count > 1 {
		label = "×" + strconv.Itoa(a.Count) + " " + label
		if a.Until > a.At {
			label += " over " + fmtDur(a.Until-a.At)
		}
	}
	switch a.Kind {
	case Injected:
		label += " from idlegate, answering " + a.Verdict + " " + a.Reason
	case ExpiryReset:
		label += " at expiry (reset_on_expire)"
	}
	tip := fmt.Sprintf("%s %s: %s, %s %s", fmtSec(a.At), conn, label, a.Verdict, a.Reason)
	if a.NAT != "" {
		tip += ", NAT " + a.NAT
	}
	p.f("<g class=\"%s\" data-kind=\"%s\" data-from=\"%s\" data-to=\"%s\" data-label=\"%s\" data-verdict=\"%s\" data-reason=\"%s\" data-conn=\"%d\" data-count=\"%d\" data-keepalive=\"%t\">",
		cls, a.Kind, a.From, a.To, esc(a.Label), esc(a.Verdict), esc(a.Reason), a.Conn, a.Count, a.Keepalive)
	p.f("<title>%s</title>", esc(tip))
	p.f("<text class=\"t\" x=\"8\" y=\"%s\">%s</text>", num(ly+4), esc(fmtSec(a.At)))
	dir := 1.0
	if x2 < x1 {
		dir = -1
	}
	end := x2 - dir*2
	if a.Kind == Dropped {
		end = x2 - dir*7
	}
	p.f("<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"", num(x1), num(ly), num(end), num(ly))
	if a.Kind != Dropped {
		p.f(" marker-end=\"url(#%s)\"", marker)
	}
	p.s("/>")
	// Where it starts: the connection's colour at the sender, a square at idlegate.
	if a.From == Gateway {
		p.f("<rect x=\"%s\" y=\"%s\" width=\"7\" height=\"7\" fill=\"#e8710a\"/>", num(x1-3.5), num(ly-3.5))
	} else {
		p.f("<circle cx=\"%s\" cy=\"%s\" r=\"4\" fill=\"%s\"/>", num(x1), num(ly), connColour(a.Conn))
	}
	// The label on the first half, the sender's side of idlegate.
	lx := (x1 + xGateway) / 2
	if a.From == Gateway {
		lx = (xGateway + x2) / 2
	}
	if conn != "" && a.From != Gateway {
		p.f("<text class=\"small\" x=\"%s\" y=\"%s\" text-anchor=\"%s\">%s</text>", num(x1-dir*8), num(ly+4), anchorAway(dir), esc(conn))
	}
	p.f("<text class=\"l\" x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>", num(lx), num(ly-5), esc(label))
	switch a.Kind {
	case Crossed:
		p.f("<circle cx=\"%s\" cy=\"%s\" r=\"2.6\" fill=\"#2f5d9e\"/>", num(xGateway), num(ly))
		if a.NAT != "" {
			p.f("<text class=\"nat\" x=\"%s\" y=\"%s\" text-anchor=\"middle\">NAT %s</text>", num((xGateway+x2)/2), num(ly-5), esc(a.NAT))
		}
		if a.Keepalive && !a.Refreshed {
			p.f("<text class=\"why\" x=\"%s\" y=\"%s\" text-anchor=\"middle\" fill=\"#6a4fb3\">does not refresh the timer</text>", num((xGateway+x2)/2), num(ly-5))
		}
	case Dropped:
		c := xGateway
		p.f("<path class=\"cross\" d=\"M%s,%sL%s,%sM%s,%sL%s,%s\" stroke-width=\"2.4\"/>", num(c-6), num(ly-6), num(c+6), num(ly+6), num(c-6), num(ly+6), num(c+6), num(ly-6))
		why := a.Verdict + ": " + a.Reason
		if a.Count > 1 {
			why += " (×" + strconv.Itoa(a.Count) + ")"
		}
		p.f("<text class=\"why\" x=\"%s\" y=\"%s\" text-anchor=\"%s\">%s</text>", num(c+dir*12), num(ly+4), anchorToward(dir), esc(why))
	}
	p.s("</g>\n")
}

func anchorAway(dir float64) string {
	if dir > 0 {
		return "end"
	}
	return "start"
}

func anchorToward(dir float64) string {
	if dir > 0 {
		return "start"
	}
	return "end"
}

func fmtBytes(n int) string {
	switch {
	case n >= 10<<20:
		return strconv.Itoa(n>>20) + " MB"
	case n >= 10<<10:
		return strconv.Itoa(n>>10) + " KB"
	}
	return strconv.Itoa(n) + " B"
}

// viewAxis is the time axis of a view's timers and occupancy: what happened in the
// view, gaps broken out.
func (p *page) viewAxis(v *View) *Axis {
	var pts []time.Duration
	for _, i := range v.Shown() {
		c := &v.Conns[i]
		pts = append(pts, c.Born)
		for _, r := range c.Timer.Ramps {
			pts = append(pts, r.From, r.To)
		}
		for _, pr := range c.Timer.Probes {
			pts = append(pts, pr.At)
		}
		if c.End != nil {
			pts = append(pts, c.End.At)
		}
	}
	for _, l := range v.Occupancy.Points {
		pts = append(pts, l.At)
	}
	from, to := time.Duration(0), p.r.Duration
	for _, t := range pts {
		from, to = min(from, t), max(to, t)
	}
	return NewAxis(pts, from, to, timerX0, timerW)
}

// Timer geometry.
const (
	timerSVGW = 1100
	timerX0   = 250.0
	timerW    = 810.0
	timerH    = 46.0 // a full timer (fill 1, the deadline)
	timerRowH = 76.0
)

var stateColours = map[string]string{
	"SYN_SENT": "#8fb8de", "SYN_RECV": "#5b9bd5", "ESTABLISHED": "#2e9d4f", "FIN_WAIT": "#f4a259",
	"CLOSE_WAIT": "#ee8434", "LAST_ACK": "#d8572a", "TIME_WAIT": "#8d78c2", "CLOSE": "#9aa3b0",
	"SYN_SENT2": "#a9c8e8", "UNREPLIED": "#e9b44c", "REPLIED": "#9cc66b", "ASSURED": "#2e9d4f",
	"NONE": "#c0c6cf",
}

func stateColour(s string) string {
	if c, ok := stateColours[s]; ok {
		return c
	}
	return "#9aa3b0"
}

func (p *page) timers(vi int, v *View, ax *Axis) {
	p.f("<h3 id=\"timers-%d\">Idle timers against the timeout in force</h3>\n", vi)
	if len(v.Conns) == 0 {
		p.s("<p class=\"muted\">no connection entry was made</p>\n")
		return
	}
	p.s(`<p class="legend">the bar fills while nothing refreshes the entry and empties when a packet does; the red dashed line is the timeout (the deadline); ✕ is the moment the entry died. Colours are its states:`)
	seen := map[string]bool{}
	var states []string
	for _, i := range v.Shown() {
		for _, s := range v.Conns[i].States {
			if !seen[s.State] {
				seen[s.State] = true
				states = append(states, s.State)
			}
		}
	}
	for _, s := range states {
		p.f("<span class=\"sw\" style=\"background:%s\"></span>%s", stateColour(s), esc(s))
	}
	p.s(` · <span style="color:#6a4fb3">◆</span> keepalive probe that refreshed, ◇ one that did not</p>` + "\n")
	shown := v.Shown()
	height := float64(len(shown))*timerRowH + 34
	p.f("<svg class=\"timers\" id=\"timers-svg-%d\" width=\"%d\" height=\"%s\" viewBox=\"0 0 %d %s\" role=\"img\" aria-label=\"idle timers\">\n", vi, timerSVGW, num(height), timerSVGW, num(height))
	for row, i := range shown {
		p.timer(&v.Conns[i], i, ax, float64(row)*timerRowH+6)
	}
	p.axis(ax, 0, height-28, height)
	p.s("</svg>\n")
}

// timer draws one connection's row at y: name, states, the timer, its end.
func (p *page) timer(c *Conn, idx int, ax *Axis, y float64) {
	top := y + 14 // fill 1
	base := top + timerH
	end := "alive at the end"
	if c.End != nil {
		end = "ended: " + c.End.Reason.String()
	}
	p.f("<g class=\"timer\" data-conn=\"%d\" data-end=\"%s\">", idx, esc(endReason(c)))
	p.f("<title>%s</title>", esc(c.Name))
	p.f("<circle cx=\"10\" cy=\"%s\" r=\"4.5\" fill=\"%s\"/>", num(top+8), connColour(idx))
	p.f("<text class=\"cname\" x=\"20\" y=\"%s\">%s</text>", num(top+12), esc(clip(c.Short, 30)))
	p.f("<text class=\"small\" x=\"20\" y=\"%s\">%s · %d packets</text>", num(top+28), esc(end), c.Packets)
	life0 := c.Born
	life1 := p.r.Duration
	if c.End != nil {
		life1 = c.End.At
	}
	x0, x1 := ax.X(life0), ax.X(life1)
	p.f("<rect class=\"timerbg\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\"/>", num(x0), num(top-6), num(math.Max(x1-x0, 1)), num(timerH+6))
	p.f("<line class=\"deadline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(x0), num(top), num(x1), num(top))
	// Ramps.
	for _, r := range c.Timer.Ramps {
		col := stateColour(r.State)
		if r.Busy {
			h := math.Max(1.5, math.Min(r.Peak, 1.1)*timerH)
			p.f("<rect class=\"ramp busy\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\" fill-opacity=\".55\"/>",
				num(ax.X(r.From)), num(base-h), num(math.Max(ax.X(r.To)-ax.X(r.From), 0.8)), num(h), col)
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s,%s", num(ax.X(r.From)), num(base))
		fill := func(t time.Duration) float64 {
			if r.Timeout <= 0 {
				return 0
			}
			return math.Min(float64(t-r.From)/float64(r.Timeout), 1.1)
		}
		for _, t := range ax.Cuts(r.From, r.To) {
			fmt.Fprintf(&b, " %s,%s", num(ax.X(t)), num(base-fill(t)*timerH))
		}
		fmt.Fprintf(&b, " %s,%s %s,%s", num(ax.X(r.To)), num(base-fill(r.To)*timerH), num(ax.X(r.To)), num(base))
		p.f("<polygon class=\"ramp\" data-fill=\"%s\" points=\"%s\" fill=\"%s\" fill-opacity=\".45\" stroke=\"%s\" stroke-width=\"1.2\"/>",
			strconv.FormatFloat(r.Fill(), 'f', 3, 64), b.String(), col, col)
	}
	// States: a band under the timer, with the timeout of each.
	for _, s := range c.States {
		sx0, sx1 := ax.X(s.From), ax.X(s.To)
		p.f("<rect class=\"state\" data-state=\"%s\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"9\" fill=\"%s\"><title>%s, timeout %s</title></rect>",
			esc(s.State), num(sx0), num(base+2), num(math.Max(sx1-sx0, 1)), stateColour(s.State), esc(s.State), esc(fmtDur(s.Timeout)))
		if sx1-sx0 > 110 {
			p.f("<text class=\"small\" x=\"%s\" y=\"%s\">%s · timeout %s</text>", num(sx0+3), num(top-9+0), esc(s.State), esc(fmtDur(s.Timeout)))
		}
	}
	for _, pr := range c.Timer.Probes {
		cls := "probe"
		if !pr.Refreshed {
			cls += " norefresh"
		}
		x := ax.X(pr.At)
		p.f("<path class=\"%s\" d=\"M%s,%sl4,4l-4,4l-4,-4z\"/>", cls, num(x), num(base-9))
	}
	if e := c.End; e != nil {
		x := ax.X(e.At)
		cls := "death"
		lcls := "deathl"
		if e.Reason == conntrack.ReasonClosed {
			cls += " closed"
			lcls += " closed"
		}
		p.f("<line class=\"%s\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", cls, num(x), num(top-8), num(x), num(base+12))
		p.f("<path class=\"cross\" d=\"M%s,%sL%s,%sM%s,%sL%s,%s\" stroke-width=\"2.4\"/>", num(x-5), num(top-5), num(x+5), num(top+5), num(x-5), num(top+5), num(x+5), num(top-5))
		text := endReason(c) + " at " + fmtOff(e.At)
		switch e.Reason {
		case conntrack.ReasonExpired, conntrack.ReasonClosed:
			text = e.Reason.String() + " at " + fmtOff(e.At) + " after " + fmtDur(e.Idle) + " idle (timeout " + fmtDur(e.Timeout) + ")"
		case conntrack.ReasonEvicted:
			text = "evicted at " + fmtOff(e.At) + " to make room, after " + fmtDur(e.Idle) + " idle"
		}
		anchor, tx := "start", x+8
		if x > timerX0+timerW*0.62 {
			anchor, tx = "end", x-8
		}
		p.f("<text class=\"%s\" x=\"%s\" y=\"%s\" text-anchor=\"%s\">%s</text>", lcls, num(tx), num(top+16), anchor, esc(text))
	}
	p.s("</g>\n")
}

func endReason(c *Conn) string {
	if c.End == nil {
		return "alive"
	}
	return c.End.Reason.String()
}

// axis draws ticks at y and the broken-out gaps from y0 to y1.
func (p *page) axis(ax *Axis, y0, y, y1 float64) {
	p.s("<g class=\"axis\">")
	p.f("<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(ax.X0), num(y), num(ax.X0+ax.Width), num(y))
	for _, t := range ax.Ticks() {
		p.f("<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>", num(t.X), num(y), num(t.X), num(y+4), num(t.X), num(y+16), esc(t.Label))
	}
	for _, s := range ax.Spans {
		if !s.Gap {
			continue
		}
		p.f("<g class=\"gap\" data-gap=\"%s\"><rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#ffffff\" fill-opacity=\".6\"/>", esc(fmtDur(s.To-s.From)), num(s.X0+6), num(y0), num(s.X1-s.X0-12), num(y-y0))
		for _, x := range []float64{s.X0 + 6, s.X1 - 6} {
			p.f("<path class=\"zig\" d=\"M%s,%s", num(x), num(y0))
			for yy, k := y0, 0; yy < y; yy, k = yy+8, k+1 {
				dx := 3.0
				if k%2 == 1 {
					dx = -3
				}
				p.f(" L%s,%s", num(x+dx), num(math.Min(yy+8, y)))
			}
			p.s("\"/>")
		}
		p.f("<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">≈ %s</text></g>", num((s.X0+s.X1)/2), num(y+16), esc(fmtDur(s.To-s.From)))
	}
	p.s("</g>\n")
}

func (p *page) occupancy(vi int, v *View, ax *Axis) {
	o := &v.Occupancy
	p.f("<h3 id=\"occupancy-%d\">Table occupancy</h3>\n", vi)
	busy := o.Capacity > 0 && (o.Peak*4 >= o.Capacity || o.Evicted > 0 || o.Refused > 0)
	sentence := fmt.Sprintf("The table held at most %d of %d entries; %d evicted, %d new connections refused because it was full.", o.Peak, o.Capacity, o.Evicted, o.Refused)
	p.f("<p class=\"muted\" id=\"occupancy-text-%d\">%s</p>\n", vi, esc(sentence))
	if !busy || len(o.Points) == 0 {
		return
	}
	const h, top = 130.0, 16.0
	height := top + h + 40
	p.f("<svg class=\"occupancy\" id=\"occ-%d\" width=\"%d\" height=\"%s\" viewBox=\"0 0 %d %s\" role=\"img\" aria-label=\"table occupancy\">\n", vi, timerSVGW, num(height), timerSVGW, num(height))
	ymax := float64(max(o.Capacity, o.Peak)) * 1.12
	yOf := func(n int) float64 { return top + h - float64(n)/ymax*h }
	p.f("<text class=\"cname\" x=\"20\" y=\"%s\">entries</text>", num(top+14))
	p.f("<text class=\"small\" x=\"20\" y=\"%s\">peak %d of %d</text>\n", num(top+30), o.Peak, o.Capacity)
	var b strings.Builder
	end := max(p.r.Duration, o.Points[len(o.Points)-1].At)
	fmt.Fprintf(&b, "M%s,%s", num(ax.X(o.Points[0].At)), num(yOf(0)))
	for i, l := range o.Points {
		fmt.Fprintf(&b, " L%s,%s", num(ax.X(l.At)), num(yOf(l.Entries)))
		next := end
		if i+1 < len(o.Points) {
			next = o.Points[i+1].At
		}
		fmt.Fprintf(&b, " L%s,%s", num(ax.X(next)), num(yOf(l.Entries)))
	}
	fmt.Fprintf(&b, " L%s,%s Z", num(ax.X(end)), num(yOf(0)))
	p.f("<path class=\"occ\" d=\"%s\"/>\n", b.String())
	cy := yOf(o.Capacity)
	p.f("<line class=\"cap\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/><text class=\"small\" x=\"%s\" y=\"%s\" text-anchor=\"end\" fill=\"#c62828\">capacity %d</text>\n",
		num(ax.X0), num(cy), num(ax.X0+ax.Width), num(cy), num(ax.X0+ax.Width), num(cy-4), o.Capacity)
	for _, t := range o.Evictions {
		x := ax.X(t)
		p.f("<line class=\"evict\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"><title>eviction at %s</title></line>", num(x), num(top+h-10), num(x), num(top+h+2), esc(fmtOff(t)))
	}
	if o.Evicted > 0 {
		p.f("<text class=\"small\" x=\"%s\" y=\"%s\" fill=\"#c62828\">red ticks: %d evictions</text>\n", num(ax.X0+4), num(top+h-14), o.Evicted)
	}
	p.axis(ax, top, top+h+4, height)
	p.s("</svg>\n")
}

func (p *page) matrix(m *Matrix) {
	p.s("<section id=\"matrix\">\n<h2>Each flow through each box</h2>\n")
	if m.Summary != "" {
		p.f("<p><b>%s</b></p>\n", esc(m.Summary))
	}
	p.s(`<p class="legend">one row per flow, one column per profile: the outcome, and the flow's idle timer in that box (it fills during the flow's idle gaps; the dashed line is that box's timeout)</p>` + "\n")
	// One axis for every sparkline: the replay's whole time, gaps broken out.
	var pts []time.Duration
	for _, r := range m.Rows {
		pts = append(pts, r.First, r.Last)
		for _, c := range r.Cells {
			for _, rp := range c.Timer.Ramps {
				pts = append(pts, rp.From, rp.To)
			}
		}
	}
	ax := NewAxis(pts, 0, p.r.Duration, 2, sparkW-4)
	p.s("<div class=\"scroll\"><table class=\"matrix\">\n<thead><tr><th>flow</th><th>pkts</th><th>longest idle</th>")
	for _, c := range m.Profiles {
		p.f("<th data-profile=\"%s\">%s<br><span class=\"muted\">established %s<br>%d ok, %d broken</span></th>", esc(c.Name), esc(c.Name), esc(c.Established), c.Survived, c.Broken)
	}
	p.s("</tr></thead>\n<tbody>\n")
	for _, r := range m.Rows {
		p.f("<tr><td class=\"flow\">%s</td><td>%d</td><td>%s", esc(r.Flow), r.Packets, esc(fmtDur(r.LongestIdle)))
		if len(r.Gaps) > 1 {
			var gs []string
			for _, g := range r.Gaps[1:min(len(r.Gaps), 4)] {
				gs = append(gs, fmtDur(g.To-g.From))
			}
			p.f("<span class=\"detail\">then %s</span>", esc(strings.Join(gs, ", ")))
		}
		p.s("</td>")
		for i, c := range r.Cells {
			cls := "ok"
			if c.Outcome != replay.Survived {
				cls = "broken"
			}
			p.f("<td class=\"cell %s\" data-profile=\"%s\" data-outcome=\"%s\"><b>%s</b>", cls, esc(m.Profiles[i].Name), esc(c.Outcome.String()), esc(c.Text))
			if c.Detail != "" {
				p.f("<span class=\"detail\">%s</span>", esc(c.Detail))
			}
			if c.InForce > 0 {
				p.f("<span class=\"detail\">longest idle: %s of the timeout %s</span>", esc(percent(c.Peak)), esc(fmtDur(c.InForce)))
			}
			p.spark(&c.Timer, ax, c.Outcome != replay.Survived)
			p.s("</td>")
		}
		p.s("</tr>\n")
	}
	p.s("</tbody></table></div>\n")
	if m.Hidden > 0 {
		p.f("<p class=\"muted\">%d more flows survived every profile and are not listed</p>\n", m.Hidden)
	}
	p.s("</section>\n")
}

const sparkW, sparkH = 150.0, 30.0

// percent prints a fill: "100%", "37%", "0.2%".
func percent(f float64) string {
	if f < 0.1 {
		return strconv.FormatFloat(f*100, 'f', 1, 64) + "%"
	}
	return strconv.Itoa(int(math.Round(f*100))) + "%"
}

// spark draws a small idle timer; deaths (a full timer) are crossed out when the flow
// broke (a survivor's entry may still end, closed, after its last packet).
func (p *page) spark(t *Timer, ax *Axis, broken bool) {
	p.f("<svg class=\"spark\" width=\"%s\" height=\"%s\" viewBox=\"0 0 %s %s\">", num(sparkW), num(sparkH), num(sparkW), num(sparkH))
	top, base := 5.0, sparkH-3
	h := base - top
	p.f("<line class=\"deadline\" x1=\"0\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(top), num(sparkW), num(top))
	for _, r := range t.Ramps {
		col := stateColour(r.State)
		if r.Busy {
			hh := math.Max(1, math.Min(r.Peak, 1.1)*h)
			p.f("<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"/>", num(ax.X(r.From)), num(base-hh), num(math.Max(ax.X(r.To)-ax.X(r.From), 0.6)), num(hh), col)
			continue
		}
		f := math.Min(r.Fill(), 1.1)
		var b strings.Builder
		fmt.Fprintf(&b, "%s,%s", num(ax.X(r.From)), num(base))
		for _, c := range ax.Cuts(r.From, r.To) {
			fc := math.Min(float64(c-r.From)/float64(r.Timeout), 1.1)
			fmt.Fprintf(&b, " %s,%s", num(ax.X(c)), num(base-fc*h))
		}
		fmt.Fprintf(&b, " %s,%s %s,%s", num(ax.X(r.To)), num(base-f*h), num(ax.X(r.To)), num(base))
		p.f("<polygon points=\"%s\" fill=\"%s\" fill-opacity=\".5\" stroke=\"%s\"/>", b.String(), col, col)
		if broken && r.Fill() >= 0.999 {
			x := ax.X(r.To)
			p.f("<path class=\"cross\" d=\"M%s,%sL%s,%sM%s,%sL%s,%s\" stroke-width=\"1.8\"/>", num(x-3), num(top-3), num(x+3), num(top+3), num(x-3), num(top+3), num(x+3), num(top-3))
		}
	}
	p.s("</svg>")
}

func (p *page) live(l *Live) {
	p.s("<section id=\"live\">\n<h2>Counters</h2>\n<table class=\"plain\"><tbody>\n")
	for _, c := range l.Counters {
		p.f("<tr><th>%s</th><td>%d</td></tr>\n", esc(c.Name), c.Value)
	}
	for _, m := range []struct {
		name string
		m    map[string]uint64
	}{{"verdict", l.Verdicts}, {"reason", l.Reasons}} {
		keys := make([]string, 0, len(m.m))
		for k, n := range m.m {
			if n > 0 {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p.f("<tr><th>%s %s</th><td>%d</td></tr>\n", m.name, esc(k), m.m[k])
		}
	}
	p.s("</tbody></table>\n")
	p.f("<h2>Table now (%d entries, soonest to expire first)</h2>\n<table class=\"plain\"><thead><tr><th>connection</th><th>state</th><th>idle</th><th>timeout</th><th>left</th><th>NAT</th><th>packets out/in</th></tr></thead><tbody>\n", len(l.Entries))
	for _, e := range l.Entries {
		p.f("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d / %d</td></tr>\n",
			esc(e.Name), esc(e.State), esc(fmtDur(e.Idle)), esc(fmtDur(e.Timeout)), esc(fmtDur(e.Left)), esc(e.NAT), e.Packets[0], e.Packets[1])
	}
	p.s("</tbody></table>\n</section>\n")
}
