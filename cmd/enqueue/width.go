package main

import (
	"io"
	"os"
	"strconv"

	"golang.org/x/term"
)

// statusWidthMin is the narrowest table status tries for: below it, lines
// run longer rather than lose what they say.
const statusWidthMin = 60

// terminalWidth is the width status keeps its table within: the terminal's
// when stdout is one, else $COLUMNS, else statusWidth (a pipe, a log).
func terminalWidth(stdout io.Writer, getenv func(string) string) int {
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return max(w, statusWidthMin)
		}
	}
	if w, err := strconv.Atoi(getenv("COLUMNS")); err == nil && w > 0 {
		return max(w, statusWidthMin)
	}
	return statusWidth
}
