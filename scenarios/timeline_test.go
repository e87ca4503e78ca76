package scenarios

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// The printed timeline fits the width it is given, wrapping text inside its columns;
// DefaultWidth keeps the classic three columns of 40.
func TestTimelineFitsWidth(t *testing.T) {
	rows := []Row{
		{T: 0.352, col: colClient, Text: "client/c1 idle 5s"},
		{T: 3.353, col: colGateway, Text: "DESTROY tcp 44336->7000 expired: idle 3.0s >= timeout 3s"},
		{T: 5.353, col: colServer, Text: "server/c1 recv 6B from a rather long-winded peer that says a lot"},
	}
	for _, tc := range []struct {
		width, col int
	}{{DefaultWidth, 40}, {80, 21}, {200, 61}, {30, minColWidth}} {
		var b bytes.Buffer
		printRows(&b, rows, tc.width)
		lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
		if got := colWidthFor(tc.width); got != tc.col {
			t.Errorf("width %d: columns of %d, want %d", tc.width, got, tc.col)
		}
		limit := max(tc.width, 8+3*3+3*minColWidth)
		for _, l := range lines {
			if n := utf8.RuneCountInString(l); n > limit {
				t.Errorf("width %d: a line of %d runes: %q", tc.width, n, l)
			}
		}
		if tc.width == DefaultWidth && utf8.RuneCountInString(lines[1]) != DefaultWidth {
			t.Errorf("the rule under the header is %d wide, want %d", utf8.RuneCountInString(lines[1]), DefaultWidth)
		}
		text := strings.Join(strings.Fields(b.String()), " ")
		for _, w := range []string{"DESTROY", "expired:", "long-winded"} {
			if !strings.Contains(text, w) {
				t.Errorf("width %d: %q lost", tc.width, w)
			}
		}
	}
}
