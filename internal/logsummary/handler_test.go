package logsummary

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is an io.Writer that is safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSuffix(b.buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// fixture is a summarising logger on a text handler, a fake clock and a
// tick channel whose ticks return once the sweep they start is done.
type fixture struct {
	t     *testing.T
	out   *syncBuffer
	clock *clock
	h     *Handler
	log   *slog.Logger
	tick  chan time.Time
	swept chan struct{}
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	f := &fixture{t: t, out: &syncBuffer{}, clock: newClock(), tick: make(chan time.Time), swept: make(chan struct{})}
	opts.Now = f.clock.Now
	opts.Tick = f.tick
	f.h = New(slog.NewTextHandler(f.out, &slog.HandlerOptions{Level: slog.LevelDebug}), opts)
	f.h.st.afterSweep = func() { f.swept <- struct{}{} }
	f.log = slog.New(f.h)
	t.Cleanup(func() { f.h.Close() })
	return f
}

// sweep runs one background sweep and waits for it to finish.
func (f *fixture) sweep() {
	f.t.Helper()
	select {
	case f.tick <- f.clock.Now():
	case <-time.After(5 * time.Second):
		f.t.Fatal("no background sweep is running")
	}
	<-f.swept
}

func (f *fixture) sweeping() bool {
	f.h.st.mu.Lock()
	defer f.h.st.mu.Unlock()
	return f.h.st.running
}

var repeatedAttr = regexp.MustCompile(`[ .]repeated=(\d+)`)

// repeated returns the repeated=N of a line, or 0.
func repeated(line string) int {
	m := repeatedAttr.FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func dialError(port int) error {
	return fmt.Errorf("dial tcp 127.0.0.1:%d: connect: connection refused", port)
}

func TestThousandRepeatsGiveOneLineAndOneSummary(t *testing.T) {
	f := newFixture(t, Options{})
	// One call site, as in a retry loop.
	fetchFailed := func(args ...any) { f.log.Error("producer: Error fetching jobs", args...) }
	for i := range 1000 {
		fetchFailed("err", dialError(40000+i), "attempt", i)
		f.clock.Add(10 * time.Millisecond) // 10s in all, within the window
	}
	lines := f.out.Lines()
	if len(lines) != 1 || !strings.HasSuffix(lines[0], " attempt=0") || repeated(lines[0]) != 0 {
		t.Fatalf("within the window: want the first record only, got %q", lines)
	}
	f.clock.Add(19 * time.Second) // 29s after the first record
	f.sweep()
	if lines := f.out.Lines(); len(lines) != 1 {
		t.Fatalf("before the window ends: want no summary yet, got %q", lines)
	}
	f.clock.Add(time.Second) // the window ends
	f.sweep()
	lines = f.out.Lines()
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %d: %q", len(lines), lines)
	}
	sum := lines[1]
	for _, want := range []string{
		"level=ERROR", `msg="producer: Error fetching jobs"`, "repeated=999", "over=30s",
		"127.0.0.1:40999", "attempt=999", // the last record's attributes
		"time=2026-03-01T12:00:30.000Z",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary %q lacks %q", sum, want)
		}
	}
	// The fault stopped: the next window is empty, the group is closed and
	// the sweep stops.
	f.clock.Add(30 * time.Second)
	f.sweep()
	if f.sweeping() {
		t.Error("the sweep still runs with no group left")
	}
	if lines := f.out.Lines(); len(lines) != 2 {
		t.Fatalf("an empty window wrote %q", lines[2:])
	}
	// So the fault coming back is written at once.
	fetchFailed("err", dialError(1))
	if lines := f.out.Lines(); len(lines) != 3 || repeated(lines[2]) != 0 {
		t.Fatalf("a fault that comes back: want it written at once, got %q", lines)
	}
}

func TestSteadyFaultGivesOneSummaryPerWindow(t *testing.T) {
	f := newFixture(t, Options{Window: 10 * time.Second})
	for range 60 { // one a second for a minute
		f.log.Warn("elector: Error attempting to elect", "err", dialError(5432))
		f.clock.Add(time.Second)
		if f.clock.Now().Second()%10 == 0 {
			f.sweep()
		}
	}
	lines := f.out.Lines()
	if len(lines) != 7 { // the first record and 6 summaries
		t.Fatalf("want 7 lines, got %d: %q", len(lines), lines)
	}
	total := 1
	for _, l := range lines[1:] {
		if !strings.Contains(l, "over=10s") {
			t.Errorf("summary %q lacks over=10s", l)
		}
		total += repeated(l)
	}
	if total != 60 {
		t.Errorf("lines and summaries account for %d records, want 60", total)
	}
}

func TestWindowEndsOnTheNextRecordWithoutSweep(t *testing.T) {
	f := newFixture(t, Options{})
	fail := func(l *slog.Logger) { l.Error("batch failed, will retry", "error", "connection refused") }
	for range 5 {
		fail(f.log)
	}
	f.clock.Add(31 * time.Second)
	fail(f.log)
	lines := f.out.Lines()
	if len(lines) != 2 || repeated(lines[1]) != 4 || !strings.Contains(lines[1], "over=30s") {
		t.Fatalf("want the first record and a summary of 4 over 30s, got %q", lines)
	}
	// The record that ended the window is held back in the next one.
	f.h.Close()
	lines = f.out.Lines()
	if len(lines) != 3 || repeated(lines[2]) != 1 || !strings.Contains(lines[2], "over=1s") {
		t.Fatalf("Close: want a summary of 1 over 1s, got %q", lines)
	}

	// After a window with records and an empty one, a record is written at
	// once (after the summary it makes due).
	g := newFixture(t, Options{})
	fail(g.log)
	fail(g.log)
	g.clock.Add(61 * time.Second)
	fail(g.log)
	lines = g.out.Lines()
	if len(lines) != 3 || repeated(lines[1]) != 1 || repeated(lines[2]) != 0 {
		t.Fatalf("want record, summary of 1, record; got %q", lines)
	}
}

func TestDifferentRecordsAreNotMerged(t *testing.T) {
	f := newFixture(t, Options{})
	base := f.log.With("version", 20260301120000, "partition", 1)
	for range 3 {
		base.Error("batch failed, will retry", "error", dialError(5432))
		base.Error("recording a failed batch", "error", dialError(5432))                                                  // another message
		base.Error("batch failed, will retry", "error", "ERROR: duplicate key (SQLSTATE 23505)")                          // another error
		base.Warn("batch failed, will retry", "error", dialError(5432))                                                   // another level
		f.log.With("version", 20260301120000, "partition", 2).Error("batch failed, will retry", "error", dialError(5432)) // another source
		f.log.WithGroup("river").Error("batch failed, will retry", "error", dialError(5432))                              // another group
		base.Error("batch failed, will retry", "err", dialError(5432))                                                    // err, not error
		base.Error("batch failed, will retry")                                                                            // no error
	}
	base.Error("batch failed, will retry", "error", dialError(5432)) // from another line
	lines := f.out.Lines()
	if len(lines) != 9 {
		t.Fatalf("want 9 groups written once each, got %d lines: %q", len(lines), lines)
	}
	f.h.Close()
	lines = f.out.Lines()
	if len(lines) != 9+8 {
		t.Fatalf("want 8 summaries after Close, got %q", lines[9:])
	}
	for _, l := range lines[9:] {
		if repeated(l) != 2 {
			t.Errorf("summary %q: want repeated=2", l)
		}
	}
}

func TestDebugAndInfoPassThrough(t *testing.T) {
	f := newFixture(t, Options{})
	for i := range 100 {
		f.log.Info("batch done", "rows", 1000)
		f.log.Debug("batch done", "rows", 1000)
		f.log.Info("job errored", "err", dialError(i))
	}
	lines := f.out.Lines()
	if len(lines) != 300 {
		t.Fatalf("want 300 lines, got %d", len(lines))
	}
	for _, l := range lines {
		if strings.Contains(l, "repeated=") {
			t.Fatalf("info line changed: %q", l)
		}
	}
	if f.sweeping() {
		t.Error("info records started the sweep")
	}
	f.h.Close()
	if n := len(f.out.Lines()); n != 300 {
		t.Errorf("Close wrote %d lines", n-300)
	}
}

func TestWithAttrsAndWithGroupShareCounters(t *testing.T) {
	f := newFixture(t, Options{})
	part := f.log.With("partition", 3)
	river := f.log.WithGroup("river")
	fail := func(l *slog.Logger, port int) { l.Error("batch failed", "error", dialError(port)) }
	keep := func() { river.Warn("Error keeping leadership", "err", dialError(5432)) }
	for range 4 {
		// Loggers made anew each time: what counts is what they add.
		fail(part.With("run", 1), 5432)
		fail(f.log.With("partition", 3, "run", 1), 5433)
		keep()
	}
	lines := f.out.Lines()
	if len(lines) != 2 {
		t.Fatalf("want 2 first lines, got %q", lines)
	}
	if !strings.Contains(lines[0], "partition=3 run=1") || !strings.Contains(lines[1], "river.err=") {
		t.Fatalf("attributes of WithAttrs/WithGroup lost: %q", lines)
	}
	// Closing the root closes the derived ones' groups too; the summaries
	// keep the attributes and the group of the handler.
	if err := CloseLogger(f.log); err != nil {
		t.Fatal(err)
	}
	lines = f.out.Lines()
	if len(lines) != 4 {
		t.Fatalf("want 2 summaries, got %q", lines[2:])
	}
	if l := lines[2]; repeated(l) != 7 || !strings.Contains(l, "partition=3 run=1") {
		t.Errorf("summary %q: want repeated=7 and partition=3 run=1", l)
	}
	if l := lines[3]; !strings.Contains(l, "river.repeated=3") || !strings.Contains(l, "river.err=") {
		t.Errorf("summary %q: want the group river", l)
	}
	// After Close everything passes through.
	keep()
	keep()
	if n := len(f.out.Lines()); n != 6 {
		t.Errorf("after Close: want 2 more lines, got %d", n-4)
	}
	if err := f.h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestFlushWritesPendingSummaries(t *testing.T) {
	f := newFixture(t, Options{})
	boom := func() { f.log.Error("x", "err", "boom") }
	for range 3 {
		boom()
	}
	f.clock.Add(12 * time.Second)
	f.h.Flush()
	lines := f.out.Lines()
	if len(lines) != 2 || repeated(lines[1]) != 2 || !strings.Contains(lines[1], "over=12s") {
		t.Fatalf("want a summary of 2 over 12s, got %q", lines)
	}
	f.h.Flush() // nothing held back since
	boom()
	f.clock.Add(18 * time.Second)
	f.sweep()
	lines = f.out.Lines()
	if len(lines) != 3 || repeated(lines[2]) != 1 {
		t.Fatalf("want a summary of 1 at the end of the window, got %q", lines)
	}
}

func TestGroupsAreCapped(t *testing.T) {
	f := newFixture(t, Options{MaxGroups: 3})
	for round := range 2 {
		for g := range 5 {
			for range 2 - round { // twice in the first round, once in the second
				f.log.Error(fmt.Sprintf("fault %d", g), "err", "boom")
			}
		}
	}
	f.h.st.mu.Lock()
	n := len(f.h.st.groups)
	f.h.st.mu.Unlock()
	if n != 3 {
		t.Errorf("%d groups kept, want 3", n)
	}
	f.h.Close()
	written, held := 0, 0
	for _, l := range f.out.Lines() {
		if r := repeated(l); r > 0 {
			held += r
		} else {
			written++
		}
	}
	if written+held != 15 {
		t.Errorf("lines account for %d records, want 15 (%q)", written+held, f.out.Lines())
	}
	if written != 10 { // each fault twice: first seen, and again once evicted
		t.Errorf("%d records written as they came, want 10", written)
	}
}

func TestConcurrentUse(t *testing.T) {
	f := newFixture(t, Options{Window: time.Second, MaxGroups: 20})
	const goroutines, each = 16, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := f.log.With("worker", g%4)
			if g%2 == 0 {
				log = slog.New(log.Handler().WithGroup("river"))
			}
			for i := range each {
				log.Error(fmt.Sprintf("fault %d", i%8), "err", dialError(i))
				log.Info("batch done", "i", i)
				if i%50 == 0 {
					f.clock.Add(100 * time.Millisecond)
				}
				if i%97 == 0 {
					f.h.Flush()
				}
			}
		}()
	}
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		for {
			select {
			case <-stop:
				return
			case f.tick <- f.clock.Now():
				<-f.swept
			case <-time.After(time.Millisecond):
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-ticked
	f.h.Close()
	errs, infos := 0, 0
	for _, l := range f.out.Lines() {
		switch {
		case strings.Contains(l, "level=INFO"):
			infos++
		case strings.Contains(l, "level=ERROR"):
			errs += max(repeated(l), 1)
		}
	}
	if infos != goroutines*each {
		t.Errorf("%d info lines, want %d", infos, goroutines*each)
	}
	if errs != goroutines*each {
		t.Errorf("error lines and summaries account for %d records, want %d", errs, goroutines*each)
	}
}

func TestRealTickerSweepStops(t *testing.T) {
	out := &syncBuffer{}
	h := New(slog.NewTextHandler(out, nil), Options{Window: 20 * time.Millisecond})
	log := slog.New(h)
	for i := range 2 {
		log.Error("x", "err", errors.New("boom "+strconv.Itoa(i+1)))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.st.mu.Lock()
		running := h.st.running
		h.st.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweep did not stop after the fault did")
		}
		time.Sleep(5 * time.Millisecond)
	}
	lines := out.Lines()
	if len(lines) != 2 || repeated(lines[1]) != 1 || !strings.Contains(lines[1], `err="boom 2"`) {
		t.Fatalf("want the record and its summary, got %q", lines)
	}
	h.Close()
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"dial tcp 127.0.0.1:5432: connect: connection refused":         "dial tcp #.#.#.#:#: connect: connection refused",
		"dial tcp [::1]:5432: connect: connection refused":             "dial tcp [::#]:#: connect: connection refused",
		"job 550e8400-e29b-41d4-a716-446655440000 lost":                "job #-#-#-#-# lost",
		"pid 4711, pid4711, conn_4a7f, 0xc000123abc, deadbeef, v5":     "pid #, pid#, conn_#, #, #, v#",
		"context deadline exceeded":                                    "context deadline exceeded",
		"ERROR: duplicate key value (SQLSTATE 23505)":                  "ERROR: duplicate key value (SQLSTATE #)",
		"failed to connect to `user=postgres database=postgres`: face": "failed to connect to `user=postgres database=postgres`: face",
		"": "",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// A Handler is a slog.Handler whatever its options.
var _ slog.Handler = (*Handler)(nil)

func TestEnabledFollowsInner(t *testing.T) {
	h := New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}), Options{})
	defer h.Close()
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Error("Enabled does not follow the inner handler")
	}
}
