package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
)

// statusOptions are the flags of "enqueue status".
type statusOptions struct {
	asJSON   bool
	watch    bool
	interval time.Duration
}

const (
	// statusIntervalDefault is how often "status --watch" redraws.
	statusIntervalDefault = time.Second
	// statusWidth is the width the table is kept within when stdout is not a
	// terminal and $COLUMNS is not set.
	statusWidth = 120
	// barWidth is the number of cells of the progress bar; it gives way down
	// to half of it when the table is too wide.
	barWidth = 20
	// nameMin is how short a long name may be cut when the table is still
	// too wide, and nameLeast how short once the mode and the bar are gone.
	nameMin   = 16
	nameLeast = 8
	// clearScreen moves the cursor home and clears the screen: each frame of
	// "status --watch" starts with it.
	clearScreen = "\x1b[H\x1b[2J"
)

func (c *command) status(ctx context.Context, opts statusOptions) error {
	if opts.watch && opts.asJSON {
		return cli.Usagef("status: --watch redraws a table for people; use --json without --watch")
	}
	if opts.interval <= 0 {
		return cli.Usagef("status: --interval must be positive, got %s", opts.interval)
	}
	var version *int64
	if len(c.args) > 0 {
		v, err := c.version("status")
		if err != nil {
			return err
		}
		version = &v
	}
	pool, _, reg, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	load := func(ctx context.Context) (runs []batches.RunStatus, err error) {
		err = c.read(ctx, pool, func(q batches.Querier) error {
			runs, err = loadStatus(ctx, q, reg, version)
			return err
		})
		return runs, err
	}
	runs, err := load(ctx)
	if err != nil {
		if opts.watch && ctx.Err() != nil {
			return nil // Ctrl-C before the first frame
		}
		return err
	}
	if version != nil && len(runs) == 0 {
		if _, err := reg.Get(*version); err != nil {
			return fmt.Errorf("no backfill has version %d (not in %s, not in Go, never enqueued)", *version, c.settings.Dir)
		}
	}
	switch {
	case opts.asJSON:
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(runs)
	case opts.watch:
		return c.watchStatus(ctx, runs, load, version, opts.interval)
	}
	for _, r := range runs {
		if r.Drift != "" {
			fmt.Fprintf(c.stderr, "warning: %d_%s run %d: %s\n", r.Version, r.Name, r.RunNumber, r.Drift)
		}
	}
	writeStatus(c.stdout, runs, version, false, c.width)
	return nil
}

// loadStatus reads the runs and marks those whose definition changed since
// they were enqueued.
func loadStatus(ctx context.Context, q batches.Querier, reg *batches.Registry, version *int64) ([]batches.RunStatus, error) {
	runs, err := batches.ListStatus(ctx, q, version)
	if err != nil {
		return nil, err
	}
	for i := range runs {
		r := &runs[i]
		if def, err := reg.Get(r.Version); err == nil && def.Checksum != r.Checksum {
			r.Drift = fmt.Sprintf("%s changed since this run was enqueued (checksum %s, recorded %s)", def.Source, def.Checksum, r.Checksum)
		}
	}
	return runs, nil
}

// watchStatus redraws the table every interval until every run shown is
// finished (completed, failed or cancelled), or until ctx is cancelled
// (Ctrl-C), which is not an error.
func (c *command) watchStatus(ctx context.Context, runs []batches.RunStatus, load func(context.Context) ([]batches.RunStatus, error),
	version *int64, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		fmt.Fprint(c.stdout, clearScreen)
		fmt.Fprintf(c.stdout, "Every %s: enqueue status (Ctrl-C to stop)  %s\n\n", interval, time.Now().Format("2006-01-02 15:04:05"))
		writeStatus(c.stdout, runs, version, true, c.width)
		if allFinished(runs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		next, err := load(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		runs = next
	}
}

// finished says whether a run has reached a state it does not leave by
// itself.
func finished(s batches.State) bool {
	return s == batches.StateCompleted || s == batches.StateFailed || s == batches.StateCancelled
}

func allFinished(runs []batches.RunStatus) bool {
	for _, r := range runs {
		if !finished(r.State) {
			return false
		}
	}
	return true
}

// writeStatus writes the table for people, within width columns: one line
// per run, and indented lines under it for why it is held back, its last
// error and (with drift) a changed definition.
func writeStatus(w io.Writer, runs []batches.RunStatus, version *int64, drift bool, width int) {
	if len(runs) == 0 {
		if version != nil {
			fmt.Fprintf(w, "version %d has not been enqueued yet\n", *version)
		} else {
			fmt.Fprintln(w, "no backfill has been enqueued yet")
		}
		return
	}
	header := []string{"VERSION", "NAME", "MODE", "RUN", "STATE", "PROGRESS", "ROWS", "ROWS/S", "ETA", "FAILED"}
	// Right-aligned columns: the numbers.
	right := []bool{false, false, false, false, false, false, true, true, true, true}
	const nameCol, modeCol, progressCol, gap = 1, 2, 5, 2
	rows := make([][]string, len(runs))
	for i, r := range runs {
		run := fmt.Sprint(r.RunNumber)
		if r.Direction == batches.DirectionDown {
			run += " revert"
		}
		rows[i] = []string{
			fmt.Sprint(r.Version), r.Name, string(r.Mode), run, string(r.State),
			progressCell(r, barWidth), rowsCell(r), rateCell(r), etaCell(r), fmt.Sprint(r.BatchesFailed),
		}
	}
	widths := make([]int, len(header))
	measure := func() int {
		for col := range header {
			widths[col] = utf8.RuneCountInString(header[col])
			for _, row := range rows {
				widths[col] = max(widths[col], utf8.RuneCountInString(row[col]))
			}
		}
		return sum(widths) + gap*(len(widths)-1)
	}
	// Too wide for the terminal: the bar gives way first, down to half its
	// width, then long names, then the mode column, then the bar (the
	// percentage stays), then names down to nameLeast.
	progress := progressCol // moves left when the mode column goes
	bar := func(cells int) {
		for i, r := range runs {
			rows[i][progress] = progressCell(r, cells)
		}
	}
	names := func(least int) {
		if over := measure() - width; over > 0 {
			n := max(least, widths[nameCol]-over)
			for _, row := range rows {
				row[nameCol] = cut(row[nameCol], n)
			}
		}
	}
	if over := measure() - width; over > 0 {
		bar(max(barWidth/2, barWidth-over))
	}
	names(nameMin)
	if measure() > width {
		header = slices.Delete(header, modeCol, modeCol+1)
		right = slices.Delete(right, modeCol, modeCol+1)
		for i := range rows {
			rows[i] = slices.Delete(rows[i], modeCol, modeCol+1)
		}
		widths = widths[:len(header)]
		progress--
	}
	if measure() > width {
		bar(0)
		header[progress] = "DONE"
	}
	names(nameLeast)
	measure()
	line := func(cells []string) {
		var b strings.Builder
		for col, cell := range cells {
			pad := strings.Repeat(" ", widths[col]-utf8.RuneCountInString(cell))
			if right[col] {
				b.WriteString(pad + cell)
			} else {
				b.WriteString(cell + pad)
			}
			if col < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", gap))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	for i, r := range runs {
		line(rows[i])
		for _, d := range details(r, drift, width) {
			fmt.Fprintln(w, d)
		}
	}
}

// details are the indented lines under a run.
func details(r batches.RunStatus, drift bool, width int) []string {
	const indent = "    "
	var out []string
	add := func(label, text string) {
		out = append(out, indent+label+": "+cut(text, width-len(indent)-len(label)-2))
	}
	if r.HeldBack != "" {
		add("held back", r.HeldBack)
	}
	if !finished(r.State) {
		add("throttle", throttleLine(r))
	}
	if r.LastError != nil && (r.State == batches.StateFailed || r.RetryingAttempt > 0) {
		add("last error", oneLine(r.LastError, math.MaxInt))
	}
	if drift && r.Drift != "" {
		add("warning", r.Drift)
	}
	return out
}

// throttleLine says what paces a run: "rate 8000 rows/s (pool-wide, Redis),
// duty 25%, batch 1000; set by ann@ops1 Mar 1 14:02:11". The share of time
// the duty cycle measured shows on the held-back line when it binds.
func throttleLine(r batches.RunStatus) string {
	s := "rate " + batches.FormatRate(r.Rate)
	if r.Rate > 0 {
		s += rateHeld(r.RateLimit)
	}
	s += ", duty " + batches.FormatDutyCycle(r.DutyCycle)

	if r.BatchTimeMS > 0 {
		s += fmt.Sprintf(", batches aim at %s", time.Duration(r.BatchTimeMS)*time.Millisecond)
	} else {
		s += fmt.Sprintf(", batch %d", r.BatchSize)
	}
	if r.ThrottledBy != nil && r.ThrottledAt != nil {
		s += fmt.Sprintf("; set by %s %s", *r.ThrottledBy, r.ThrottledAt.Local().Format("Jan 2 15:04:05"))
	}
	return s
}

// rateHeld says how the live workers hold a rate (batches.RunStatus.RateLimit).
func rateHeld(mode string) string {
	switch {
	case mode == "":
		return ""
	case mode == batches.RateLimitRedis:
		return " (pool-wide, Redis)"
	case strings.HasPrefix(mode, "share: "):
		return " (shared: " + strings.TrimPrefix(mode, "share: ") + ")"
	}
	return " (workers differ: " + mode + ")"
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// cut shortens s to at most n characters, ending it with "…" when cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// progressCell is the bar, width cells wide, and the percentage:
// "[##########----------]  50%".
func progressCell(r batches.RunStatus, width int) string {
	if width <= 0 {
		return fmt.Sprintf("%4s", percent(r)) // too narrow for a bar
	}
	return fmt.Sprintf("%s %4s", progressBar(r, width), percent(r))
}

// progressBar draws the run's progress in width cells. A run's estimate is
// the planner's until it completes, so an unfinished run stays short of
// full, like its percentage.
func progressBar(r batches.RunStatus, width int) string {
	filled := 0
	switch {
	case r.State == batches.StateCompleted:
		filled = width
	case r.RowsEstimated > 0:
		filled = int(min(99, r.RowsDone*100/r.RowsEstimated)) * width / 100
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]"
}

// percent is the run's progress in percent: 100% only once it completed,
// "-" while nothing is known.
func percent(r batches.RunStatus) string {
	if r.State == batches.StateCompleted {
		return "100%"
	}
	if r.RowsEstimated == 0 {
		return "-"
	}
	return fmt.Sprintf("%d%%", min(99, r.RowsDone*100/r.RowsEstimated))
}

// rowsCell is rows done over rows estimated; the estimate is marked "~"
// until the run completed.
func rowsCell(r batches.RunStatus) string {
	if r.State == batches.StateCompleted {
		return humanCount(float64(r.RowsDone)) + "/" + humanCount(float64(r.RowsEstimated))
	}
	if r.RowsEstimated == 0 {
		return humanCount(float64(r.RowsDone)) + "/?"
	}
	return humanCount(float64(r.RowsDone)) + "/~" + humanCount(float64(r.RowsEstimated))
}

// rateCell is the speed over the last minute; "-" for a run never started.
func rateCell(r batches.RunStatus) string {
	if r.StartedAt == nil && r.RowsPerSecond == 0 {
		return "-"
	}
	return humanCount(r.RowsPerSecond)
}

// etaCell is the time left at the measured speed: "-" when unknown, nothing
// for a finished run, and the range while it is uncertain (etaText).
func etaCell(r batches.RunStatus) string {
	if finished(r.State) {
		return ""
	}
	if r.ETASeconds == nil {
		return "-"
	}
	return etaText(r)
}

// etaSettled is the widest range, relative to the ETA, that shows as the ETA
// alone: within about 10% either way.
const etaSettled = 0.2

// etaText writes a known ETA: "45s" once settled, or while uncertain (in
// the first seconds of a run) its range, "40s–1m05s".
func etaText(r batches.RunStatus) string {
	eta := formatETA(*r.ETASeconds)
	if r.ETALowSeconds == nil || r.ETAHighSeconds == nil {
		return eta
	}
	low, high := formatETA(*r.ETALowSeconds), formatETA(*r.ETAHighSeconds)
	if low == high || *r.ETAHighSeconds-*r.ETALowSeconds <= etaSettled**r.ETASeconds {
		return eta
	}
	return low + "–" + high
}

// formatETA writes seconds the short way: "45s", "3m20s", "1h02m", "2d03h".
func formatETA(seconds float64) string {
	if math.IsNaN(seconds) || seconds < 0 {
		seconds = 0
	}
	if seconds > math.MaxInt64/2 {
		return "∞"
	}
	s := int64(math.Round(seconds))
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		// Rounded to the minute, so 1h59m50s reads 2h00m.
		m := (s + 30) / 60
		return fmt.Sprintf("%dh%02dm", m/60, m%60)
	default:
		h := (s + 1800) / 3600
		return fmt.Sprintf("%dd%02dh", h/24, h%24)
	}
}

// humanCount writes a count or a rate in at most about five characters:
// exact below 10,000, then with three significant digits and k, M or B.
func humanCount(n float64) string {
	switch {
	case n < 10:
		if n == math.Trunc(n) {
			return fmt.Sprintf("%.0f", n)
		}
		return fmt.Sprintf("%.1f", n)
	case n < 10_000:
		return fmt.Sprintf("%.0f", n)
	}
	for _, u := range []struct {
		div  float64
		name string
	}{{1e3, "k"}, {1e6, "M"}, {1e9, "B"}} {
		v := n / u.div
		switch {
		case v < 9.995:
			return fmt.Sprintf("%.2f%s", v, u.name)
		case v < 99.95:
			return fmt.Sprintf("%.1f%s", v, u.name)
		case v < 999.5:
			return fmt.Sprintf("%.0f%s", v, u.name)
		}
	}
	return fmt.Sprintf("%.0fB", n/1e9)
}

func oneLine(s *string, max int) string {
	if s == nil {
		return ""
	}
	v := strings.Join(strings.Fields(*s), " ")
	if len(v) > max {
		v = v[:max-1] + "…"
	}
	return v
}
