package scenarios

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Timeline columns.
const (
	colClient = iota
	colGateway
	colServer
)

var columnNames = [...]string{"client", "gateway", "server"}

// Row is one line of a timeline.
type Row struct {
	T      float64 `json:"t"`      // seconds since the story started
	Column string  `json:"column"` // client, gateway or server
	Text   string  `json:"text"`

	at  time.Time
	col int
}

// timeline collects rows from the agents, the processes, the gateway and the runner.
// Safe for concurrent use.
type timeline struct {
	mu    sync.Mutex
	start time.Time
	rows  []Row
}

func (t *timeline) add(at time.Time, col int, text string) {
	t.mu.Lock()
	t.rows = append(t.rows, Row{at: at, col: col, Text: text})
	t.mu.Unlock()
}

// foldGap and foldKeep: within a burst of rows of the same shape in one column (each
// less than foldGap after the previous), the first foldKeep are shown and the rest
// summed up in one row, so that churn does not bury the story.
const (
	foldGap  = 400 * time.Millisecond
	foldKeep = 3
)

var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// Rows returns the rows up to end, in time order, bursts folded.
func (t *timeline) Rows(end time.Time) []Row {
	t.mu.Lock()
	rows := make([]Row, 0, len(t.rows))
	for _, r := range t.rows {
		if !r.at.After(end) {
			rows = append(rows, r)
		}
	}
	t.mu.Unlock()
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.Before(rows[j].at) })

	// A burst is a run of rows of one shape (the text with its numbers blanked out)
	// in one column.
	type burstKey struct {
		col   int
		shape string
	}
	type burst struct {
		last   time.Time
		n      int
		hidden int
		text   string
		lastAt time.Time
	}
	bursts := map[burstKey]*burst{}
	var out []Row
	flush := func(key burstKey, b *burst) {
		if b.hidden > 0 {
			out = append(out, Row{at: b.lastAt, col: key.col, Text: fmt.Sprintf("... %d more like that, the last: %s", b.hidden, b.text)})
		}
	}
	for _, r := range rows {
		key := burstKey{r.col, digits.ReplaceAllString(r.Text, "#")}
		b := bursts[key]
		if b != nil && r.at.Sub(b.last) < foldGap {
			b.n++
			b.last = r.at
			if b.n > foldKeep {
				b.hidden++
				b.text, b.lastAt = r.Text, r.at
				continue
			}
			out = append(out, r)
			continue
		}
		if b != nil {
			flush(key, b)
		}
		bursts[key] = &burst{last: r.at, n: 1}
		out = append(out, r)
	}
	for key, b := range bursts {
		flush(key, b)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	for i := range out {
		out[i].T = out[i].at.Sub(t.start).Seconds()
		out[i].Column = columnNames[out[i].col]
	}
	return out
}

// DefaultWidth is the width of a printed timeline when the terminal's is not known:
// three text columns of 40.
const DefaultWidth = 137

// minColWidth is the narrowest text column; a terminal narrower than 3 of them plus
// the time and separators gets lines longer than it is wide.
const minColWidth = 12

// colWidthFor is the width of each of the three text columns in a timeline that is
// width columns wide: 8 for the time and 3 separators of 3.
func colWidthFor(width int) int {
	return max((width-8-3*3)/3, minColWidth)
}

// printRows writes rows as three columns, client | gateway | server, to fit width
// terminal columns; long text wraps inside its column.
func printRows(w io.Writer, rows []Row, width int) {
	colWidth := colWidthFor(width)
	sep := strings.Repeat("-", colWidth)
	fmt.Fprintf(w, "%8s | %-*s | %-*s | %s\n", "time", colWidth, "client", colWidth, "gateway", "server")
	fmt.Fprintf(w, "%8s-+-%s-+-%s-+-%s\n", "--------", sep, sep, sep)
	for _, r := range rows {
		lines := wrap(r.Text, colWidth)
		for i, l := range lines {
			ts := ""
			if i == 0 {
				ts = fmt.Sprintf("%7.3fs", r.T)
			}
			cells := [3]string{}
			cells[r.col] = l
			line := fmt.Sprintf("%8s | %-*s | %-*s | %s", ts, colWidth, cells[0], colWidth, cells[1], cells[2])
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
	}
}

// wrap breaks s into lines of at most width runes, at spaces where it can.
func wrap(s string, width int) []string {
	var out []string
	for _, para := range strings.Split(s, "\n") {
		words := strings.Fields(para)
		var cur []rune
		for _, word := range words {
			wr := []rune(word)
			for len(wr) > width {
				if len(cur) > 0 {
					out = append(out, string(cur))
					cur = nil
				}
				out = append(out, string(wr[:width]))
				wr = wr[width:]
			}
			switch {
			case len(cur) == 0:
				cur = wr
			case len(cur)+1+len(wr) <= width:
				cur = append(append(cur, ' '), wr...)
			default:
				out = append(out, string(cur))
				cur = wr
			}
		}
		if len(cur) > 0 {
			out = append(out, string(cur))
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}
