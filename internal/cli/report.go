package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Report writes what a command's error says on w: "prog: message" in one
// line (a connection error that lists every address tried included) and,
// for bad command-line input, a second line with hint, such as
// `run "enqueue help run"`. Nothing for nil or flag.ErrHelp.
func Report(w io.Writer, prog string, err error, hint string) {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	fmt.Fprintf(w, "%s: %s\n", prog, strings.Join(strings.Fields(err.Error()), " "))
	var ue *UsageError
	if errors.As(err, &ue) && hint != "" {
		fmt.Fprintln(w, hint)
	}
}
