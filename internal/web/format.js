"use strict";
// What both pages show the same way: inlined into each (page.go), so that
// a run reads alike on the list and on its own page.
window.backfillFormat = (function () {
	const numberFormat = new Intl.NumberFormat("en-US");
	function el(tag, attrs, text) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
		if (text !== undefined) e.textContent = text;
		return e;
	}
	function setText(node, text) {
		if (node.textContent !== text) node.textContent = text;
	}
	// 100 only once completed: until then the total is an estimate.
	function percent(r) {
		if (r.state === "completed") return 100;
		if (!(r.rows_estimated > 0)) return 0;
		return Math.max(0, Math.min(99, Math.floor((r.rows_done * 100) / r.rows_estimated)));
	}
	function duration(seconds) {
		if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
		let s = Math.max(0, Math.round(seconds));
		if (s < 60) return s + "s";
		const d = Math.floor(s / 86400); s -= d * 86400;
		const h = Math.floor(s / 3600); s -= h * 3600;
		const m = Math.floor(s / 60); s -= m * 60;
		if (d > 0) return d + "d " + h + "h";
		if (h > 0) return h + "h " + m + "m";
		return m + "m " + s + "s";
	}
	// The ETA; as enqueue status, its range while that is wider than a fifth
	// of it.
	function eta(r) {
		if (r.eta_seconds != null && r.eta_low_seconds != null && r.eta_high_seconds != null &&
			r.eta_high_seconds - r.eta_low_seconds > 0.2 * r.eta_seconds) {
			const low = duration(r.eta_low_seconds), high = duration(r.eta_high_seconds);
			if (low !== high) return low + "–" + high;
		}
		return duration(r.eta_seconds);
	}
	function rate(x) {
		if (!(x > 0)) return "0";
		return x < 10 ? x.toFixed(1) : numberFormat.format(Math.round(x));
	}
	// The pace in force: "rate 8,000 rows/s (pool-wide, Redis), duty 25% (busy 24%), batch 1,000".
	function pace(r) {
		return "rate " + (r.rate > 0 ? numberFormat.format(r.rate) + " rows/s" : "unlimited") +
			(r.rate > 0 && r.rate_limit ? (r.rate_limit === "redis" ? " (pool-wide, Redis)" : " (" + r.rate_limit + ")") : "") +
			(r.duty_cycle > 0 ? ", duty " + Math.round(r.duty_cycle * 100) + "% (busy " + Math.round(r.busy_share * 100) + "%)" : ", duty off") +
			(r.batch_time_ms > 0 ? ", batches aim at " + r.batch_time_ms + " ms" : ", batch " + numberFormat.format(r.batch_size)) +
			(r.throttled_by ? ", set by " + r.throttled_by : "");
	}
	return Object.freeze({ numberFormat, el, setText, percent, duration, eta, rate, pace });
})();
