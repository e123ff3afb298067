package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// screenshotDir is where the browser tests leave their screenshots: the
// repository's test-output/web, or $BACKFILL_SCREENSHOTS.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BACKFILL_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-output", "web")
	}
	dir, err := filepath.Abs(dir)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// fitsWidth lists what does not fit the window: the page scrolling sideways,
// or an element of selectors missing, hidden, or cut at an edge.
func fitsWidth(t *testing.T, ctx context.Context, selectors ...string) string {
	t.Helper()
	return jsString(t, ctx, `(() => {
	const w = window.innerWidth, bad = [];
	const sw = document.documentElement.scrollWidth;
	if (sw > w) bad.push("the page scrolls sideways: " + sw + " px wide in a " + w + " px window");
	for (const sel of `+jsArray(selectors)+`) {
		const all = document.querySelectorAll(sel);
		if (all.length === 0) bad.push(sel + ": not on the page");
		for (const e of all) {
			const r = e.getBoundingClientRect();
			if (r.width === 0 || r.height === 0) bad.push(sel + ": not visible");
			else if (r.left < 0 || r.right > w + 0.5) bad.push(sel + ": from " + Math.round(r.left) + " to " + Math.round(r.right) + " px, the window is " + w);
		}
	}
	return bad.join("\n");
})()`)
}

func jsArray(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// The list and a run's page fit a wide screen, a laptop window and a phone:
// nothing scrolls sideways and the columns, buttons and failures that
// matter are inside the window. Retry, cancel and run again work from the
// run's page and show in its timeline with who did them.
func TestBrowser_PagesFitEveryWidthAndActFromTheRunPage(t *testing.T) {
	t.Parallel()
	chromiumPath(t)

	// 3000 rows in 4 partitions at 300 rows/s; the first row breaks a check,
	// so partition 0 fails at once and the run fails when the rest is done.
	f := newFixture(t, 3000, "-- batch: 100\n-- partitions: 4\n-- attempts: 1\n-- rate: 300\n")
	testdb.Exec(t, f.pool, `ALTER TABLE items ADD CONSTRAINT items_first_row_is_read_only CHECK (id <> 1 OR n = 0)`)
	f.startWorker(t, nil)
	f.waitState(t, batches.StateFailed, 30*time.Second)
	srv := httptest.NewServer(f.handler(t, testToken, nil))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	browser, problems := newBrowser(t, ctx)
	jsConfirm := `window.confirm = () => true; "ok"`

	// The failed run's page: its failure with SQLSTATE, partitions, chart.
	require.NoError(t, chromedp.Do(browser,
		chromedp.EmulateViewport(1400, 900),
		chromedp.Navigate(srv.URL+"/runs/9/1"),
		chromedp.WaitVisible(`#failures .failure`),
		chromedp.WaitVisible(`#token`),
	))
	require.Equal(t, "9_touch run 1", jsString(t, browser, `document.getElementById('title').textContent`))
	require.Contains(t, jsString(t, browser, `document.querySelector('#failures .failure').textContent`), "SQLSTATE 23514")
	require.Contains(t, jsString(t, browser, `document.querySelector('#failures .failure').textContent`), "partition 0, keys 1..100")
	require.Contains(t, jsString(t, browser, `document.querySelector('#failures .failure pre').textContent`), "items_first_row_is_read_only")
	require.Equal(t, "4", jsString(t, browser, `String(document.querySelectorAll('#partition-rows tr').length)`))
	require.Equal(t, "failed", jsString(t, browser, `document.querySelector('#partition-rows tr[data-partition="0"] td:nth-child(2)').textContent`))
	require.Contains(t, jsString(t, browser, `document.querySelector('[data-field=statement]').textContent`), "UPDATE items SET n = n + 1")
	require.NotEqual(t, "0", jsString(t, browser, `document.getElementById('chart').getAttribute('data-points')`))
	require.Equal(t, "enqueue start fail", jsString(t, browser, `[...document.querySelectorAll('#timeline li')].map(li => li.dataset.action).join(" ")`))
	require.Contains(t, jsString(t, browser, `document.querySelector('#timeline li[data-action=enqueue]').textContent`), "by "+actorOfTests())

	// Retry from the page: the batch fails again; then cancel and run again.
	require.NoError(t, chromedp.Do(browser,
		chromedp.SendKeys(`#token`, testToken),
		chromedp.Click(`button[data-action="retry"]`),
	))
	waitJS(t, browser, `document.getElementById('message').textContent.startsWith("retrying 9_touch run 1: 1 partition(s)")`)
	f.waitState(t, batches.StateFailed, 30*time.Second)
	jsString(t, browser, jsConfirm)
	waitJS(t, browser, `!document.querySelector('button[data-action="cancel"]').disabled`)
	require.NoError(t, chromedp.Do(browser, chromedp.Click(`button[data-action="cancel"]`)))
	waitJS(t, browser, `document.getElementById('message').textContent === "cancelled 9_touch run 1"`)
	waitJS(t, browser, `[...document.querySelectorAll('#timeline li')].map(li => li.dataset.action).join(" ") === "enqueue start fail retry fail cancel"`)
	require.Contains(t, jsString(t, browser, `document.querySelector('#timeline li[data-action=retry]').textContent`), "by web page from 127.0.0.1")
	require.Contains(t, jsString(t, browser, `document.querySelector('#timeline li[data-action=cancel]').textContent`), "(failed → cancelled)")
	require.Equal(t, "2", jsString(t, browser, `String(document.querySelectorAll('#failures .failure').length)`))

	testdb.Exec(t, f.pool, `ALTER TABLE items DROP CONSTRAINT items_first_row_is_read_only`)
	waitJS(t, browser, `!document.querySelector('button[data-action="run"]').disabled`)
	require.NoError(t, chromedp.Do(browser, chromedp.Click(`button[data-action="run"]`)))
	waitJS(t, browser, `document.getElementById('message').textContent.startsWith("enqueued 9_touch run 2")`)
	st := f.status(t)
	require.Equal(t, 2, st.RunNumber)
	require.Equal(t, "runs/9/2", strings.TrimPrefix(jsString(t, browser, `document.getElementById('new-run').href`), srv.URL+"/"))

	// Every page at every width, with run 2 working and run 1 cancelled.
	dir := screenshotDir(t)
	listParts := []string{`tr[data-latest] [data-field=batches_failed]`, `tr[data-latest] [data-field=eta]`,
		`tr[data-latest] [data-field=held_back]`, `tr[data-latest] button[data-action]`, `tr[data-version] [data-field=name] a`}
	runParts := []string{`#chart`, `#timeline li`, `#failures .failure pre`, `#partition-rows td`, `[data-field=statement]`, `#actions button`}
	for _, width := range []int64{1400, 800, 375} {
		for _, page := range []struct {
			name, path, ready string
			parts             []string
		}{
			{"list", "/", `tr[data-version="9"][data-run="2"] [role=progressbar]`, listParts},
			{"run1", "/runs/9/1", `#failures .failure`, runParts},
			{"run2", "/runs/9/2", `#partition-rows tr`, runParts[:2]},
		} {
			require.NoError(t, chromedp.Do(browser,
				chromedp.EmulateViewport(width, 900),
				chromedp.Navigate(srv.URL+page.path),
				chromedp.WaitVisible(page.ready),
			))
			if page.name == "list" {
				require.Equal(t, "cancelled", jsString(t, browser, `document.querySelector('tr[data-run="1"] [data-field=state]').textContent`))
			}
			png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
			require.NoError(t, err)
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.png", page.name, width))
			require.NoError(t, os.WriteFile(path, png, 0o644))
			t.Logf("screenshot: %s", path)
			require.Empty(t, fitsWidth(t, browser, page.parts...), "%s at %d px", page.name, width)
		}
	}
	f.waitState(t, batches.StateCompleted, 60*time.Second)
	require.Empty(t, problems(), "the pages logged errors")
}

// waitJS waits up to 10 s for a JavaScript condition to hold.
func waitJS(t *testing.T, ctx context.Context, cond string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "waiting for %s", cond)
}

// actorOfTests is who the fixture's enqueue is recorded as: the enqueuer's
// host, as no actor was named.
func actorOfTests() string { return "test-host" }
