package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/faults"
)

// debianTool finds a program .ci/run installs from Debian's package pkg:
// on PATH or in /usr/bin. Missing, it fails the test in CI and skips it
// elsewhere (faults.Missing).
func debianTool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	faults.Missing(t, "%s not found on PATH nor in /usr/bin: install it with apt-get install %s (.ci/run does)", name, pkg)
	return ""
}

// chromiumPath finds Debian's chromium.
func chromiumPath(t *testing.T) string { return debianTool(t, "chromium", "chromium") }

// newBrowser starts a headless chromium with a fresh profile for the test
// and returns its context, bounded by ctx.
func newBrowser(t *testing.T, ctx context.Context) (context.Context, func() []string) {
	t.Helper()
	profile, err := os.MkdirTemp("", "backfill-web-chromium")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(profile) })
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1500, 700),
	)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})

	// Script errors and console errors (a Content-Security-Policy that blocks
	// the page's own script or style shows up here) fail the test.
	var (
		mu       sync.Mutex
		problems []string
	)
	err = chromedp.Listen(browserCtx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at %d:%d: %s", d.LineNumber+1, d.ColumnNumber+1, msg))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				problems = append(problems, "console.error: "+strings.Join(args, " "))
			}
		case *cdplog.EventEntryAdded:
			// The test's wrong token is refused on purpose.
			expected := ev.Entry.Source == cdplog.EntrySourceNetwork && strings.Contains(ev.Entry.Text, "status of 401") &&
				strings.HasSuffix(ev.Entry.URL, "/api/runs/9/pause")
			if ev.Entry.Level == cdplog.EntryLevelError && !expected {
				problems = append(problems, fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	require.NoError(t, err, "starting chromium")
	_, err = chromedp.Call(browserCtx, cdplog.Enable, cdp.Empty{})
	require.NoError(t, err, "enabling the Log domain")
	return browserCtx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// jsString evaluates a JavaScript expression that yields a string.
func jsString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	require.NoError(t, err, expr)
	return s
}

func TestBrowser_LivePageShowsProgressAndPauses(t *testing.T) {
	t.Parallel()
	chromiumPath(t) // skip before building anything when there is no browser

	// 6000 rows at 500 rows/s: about 12 s of work, slow enough to watch.
	f := newFixture(t, 6000, "-- batch: 100\n-- rate: 500\n")
	m := NewMetrics()
	f.startWorker(t, m)
	srv := httptest.NewServer(f.handler(t, testToken, m)) // 127.0.0.1
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	browser, problems := newBrowser(t, ctx)

	const row = `tr[data-version="9"][data-latest]`
	progress := func() int {
		v := jsString(t, browser, `document.querySelector('`+row+` [role=progressbar]')?.getAttribute('aria-valuenow') ?? ''`)
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "aria-valuenow %q", v)
		return n
	}
	started := time.Now()
	require.NoError(t, chromedp.Do(browser,
		chromedp.Navigate(srv.URL),
		chromedp.WaitVisible(row+` [role=progressbar]`),
		chromedp.WaitVisible(`#token`),
	))
	t.Logf("page up after %s", time.Since(started).Round(time.Millisecond))
	require.Equal(t, "touch", jsString(t, browser, `document.querySelector('`+row+` [data-field=name]').textContent`))

	// Wait for the worker to have made some progress, then watch it move
	// without a reload: the marker set on the window and the row stays.
	deadline := time.Now().Add(20 * time.Second)
	first := progress()
	for first == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		first = progress()
	}
	require.Positive(t, first, "the page never showed progress")
	jsString(t, browser, `window.noReload = "set"; document.querySelector('`+row+`').dataset.probe = "set"; "ok"`)
	time.Sleep(2 * time.Second)
	second := progress()
	t.Logf("progress %d%% then %d%% two seconds later", first, second)
	require.Greater(t, second, first, "progress must move up without a reload")
	require.Less(t, second, 100)
	require.Equal(t, "set", jsString(t, browser, `window.noReload ?? "reloaded"`))
	require.Equal(t, "set", jsString(t, browser, `document.querySelector('`+row+`').dataset.probe ?? "replaced"`))
	require.Equal(t, "running", jsString(t, browser, `document.querySelector('`+row+` [data-field=state]').textContent`))
	// A range while the estimate is uncertain: "12s–20s".
	require.Regexp(t, `^(\d+s|\d+m \d+s)(–(\d+s|\d+m \d+s))?$`, jsString(t, browser, `document.querySelector('`+row+` [data-field=eta]').textContent`))
	require.Regexp(t, `^[1-9][0-9,]*(\.\d)?$`, jsString(t, browser, `document.querySelector('`+row+` [data-field=rows_per_second]').textContent`))

	// A wrong token: the server's answer is shown and nothing changes.
	require.NoError(t, chromedp.Do(browser,
		chromedp.SendKeys(`#token`, "wrong-token"),
		chromedp.Click(row+` button[data-action="pause"]`),
	))
	_, err := chromedp.Run(browser, chromedp.Poll[chromedp.Void](`document.getElementById('error').textContent !== ""`,
		chromedp.WithPollingTimeout(5*time.Second)))
	require.NoError(t, err, "the page never showed the refusal")
	require.Equal(t, "Pause 9_touch failed (401): wrong token", jsString(t, browser, `document.getElementById('error').textContent`))
	require.Equal(t, batches.StateRunning, f.status(t).State)
	jsString(t, browser, `document.getElementById('token').value = ""; "ok"`)

	// Pause from the page with the right token.
	require.NoError(t, chromedp.Do(browser,
		chromedp.SendKeys(`#token`, testToken),
		chromedp.Click(row+` button[data-action="pause"]`),
	))
	clicked := time.Now()
	for f.status(t).State != batches.StatePaused {
		require.Less(t, time.Since(clicked), 3*time.Second, "the run was not paused within 3s of the click (it is %s)", f.status(t).State)
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("paused in the database %s after the click", time.Since(clicked).Round(time.Millisecond))
	_, err = chromedp.Run(browser, chromedp.Poll[chromedp.Void](
		`document.querySelector('`+row+` [data-field=state]').textContent === "paused"`,
		chromedp.WithPollingTimeout(5*time.Second)))
	require.NoError(t, err, "the page never showed paused")
	state := jsString(t, browser, `document.querySelector('`+row+` [data-field=state]').textContent`)
	require.Equal(t, "paused", state)
	t.Logf("page shows paused %s after the click", time.Since(clicked).Round(time.Millisecond))
	require.Equal(t, "paused 9_touch run 1", jsString(t, browser, `document.getElementById('message').textContent`))
	require.Equal(t, "", jsString(t, browser, `document.getElementById('error').textContent`), "the old error is cleared")
	require.Equal(t, "paused", jsString(t, browser, `document.querySelector('`+row+` [data-field=held_back] span').textContent`))
	require.Equal(t, "—", jsString(t, browser, `document.querySelector('`+row+` [data-field=eta]').textContent`))
	require.Equal(t, testToken, jsString(t, browser, `sessionStorage.getItem("backfill-token")`))
	buttons := jsString(t, browser, `[...document.querySelectorAll('`+row+` button')].map(b => b.textContent + (b.disabled ? "-" : "+")).join(" ")`)
	require.Equal(t, "Pause- Resume+ Cancel+ Retry- Throttle+ Run again-", buttons, "what a paused run offers")

	// Throttle from the page, the browser's two prompts answered by the test.
	jsString(t, browser, `window.prompt = (q) => q.startsWith("Rows per second") ? "1500" : "25"; "ok"`)
	require.NoError(t, chromedp.Do(browser, chromedp.Click(row+` button[data-action="throttle"]`)))
	_, err = chromedp.Run(browser, chromedp.Poll[chromedp.Void](
		`document.querySelector('`+row+` [data-field=pace]').textContent.startsWith("rate 1,500 rows/s")`,
		chromedp.WithPollingTimeout(5*time.Second)))
	require.NoError(t, err, "the page never showed the new rate")
	st := f.status(t)
	require.Equal(t, 1500.0, st.Rate)
	require.Equal(t, 25, st.BatchSize)
	require.Equal(t, "web page from 127.0.0.1", *st.ThrottledBy)
	require.Contains(t, jsString(t, browser, `document.getElementById('message').textContent`), "throttled 9_touch run 1: rate 1500 rows/s, batch 25")
	require.Equal(t, "Resume 9_touch", jsString(t, browser, `document.querySelector('`+row+` button[data-action="resume"]').getAttribute('aria-label')`))

	if path := os.Getenv("BACKFILL_WEB_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
	}
	require.Empty(t, problems(), "the page logged errors")
}

func TestBrowser_ReadOnlyPageHasNoActionButtons(t *testing.T) {
	t.Parallel()
	chromiumPath(t)
	f := newFixture(t, 100, "")
	srv := httptest.NewServer(f.handler(t, "", nil))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	browser, problems := newBrowser(t, ctx)
	require.NoError(t, chromedp.Do(browser,
		chromedp.Navigate(srv.URL),
		chromedp.WaitVisible(`tr[data-version="9"] [role=progressbar]`),
	))
	require.Equal(t, "0", jsString(t, browser, `String(document.querySelectorAll('button[data-action]').length)`))
	require.Equal(t, "0", jsString(t, browser, `String([...document.querySelectorAll('button')].filter(b => b.offsetParent !== null).length)`), "no visible button")
	require.Equal(t, "true", jsString(t, browser, `String(document.getElementById('auth').hidden)`))
	require.Equal(t, "pending", jsString(t, browser, `document.querySelector('tr[data-version="9"] [data-field=state]').textContent`))
	require.Equal(t, "auto", jsString(t, browser, `document.querySelector('tr[data-version="9"] [data-field=mode]').textContent`))
	require.Equal(t, "up", jsString(t, browser, `document.querySelector('tr[data-version="9"] [data-field=direction]').textContent`))
	require.Equal(t, "—", jsString(t, browser, `document.querySelector('tr[data-version="9"] [data-field=eta]').textContent`))

	// The page's formatting rules.
	for expr, want := range map[string]string{
		`backfillPage.duration(200)`:   "3m 20s",
		`backfillPage.duration(59.6)`:  "1m 0s",
		`backfillPage.duration(7)`:     "7s",
		`backfillPage.duration(3725)`:  "1h 2m",
		`backfillPage.duration(90000)`: "1d 1h",
		`backfillPage.duration(null)`:  "—",
		`String(backfillPage.percent({state: "running", rows_done: 2500, rows_estimated: 6000}))`:   "41",
		`String(backfillPage.percent({state: "running", rows_done: 6000, rows_estimated: 6000}))`:   "99",
		`String(backfillPage.percent({state: "completed", rows_done: 5990, rows_estimated: 6000}))`: "100",
		`String(backfillPage.percent({state: "completed", rows_done: 0, rows_estimated: 0}))`:       "100",
		`String(backfillPage.percent({state: "pending", rows_done: 0, rows_estimated: 0}))`:         "0",
		`backfillPage.rate(12345.6)`: "12,346",
		`backfillPage.rate(2.25)`:    "2.3",
		`backfillPage.eta({eta_seconds: 45, eta_low_seconds: 40, eta_high_seconds: 65})`:       "40s–1m 5s",
		`backfillPage.eta({eta_seconds: 45, eta_low_seconds: 43, eta_high_seconds: 48})`:       "45s",
		`backfillPage.eta({eta_seconds: 45, eta_low_seconds: null, eta_high_seconds: null})`:   "45s",
		`backfillPage.eta({eta_seconds: null, eta_low_seconds: null, eta_high_seconds: null})`: "—",
	} {
		require.Equal(t, want, jsString(t, browser, expr), expr)
	}
	require.Empty(t, problems(), "the page logged errors")
}
