package main

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/scenarios"
)

// termWidth is how many columns a timeline may use: $COLUMNS when it is a positive
// number, else the width of the terminal on stdout, else scenarios.DefaultWidth (a
// pipe or a file keeps the classic 137 columns).
func termWidth() int {
	if n, err := strconv.Atoi(strings.TrimSpace(os.Getenv("COLUMNS"))); err == nil && n > 0 {
		return n
	}
	if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		return int(ws.Col)
	}
	return scenarios.DefaultWidth
}
