package web

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// The pages: each one self-contained file (its style and script inline,
// nothing fetched from elsewhere) that polls the API.
var (
	//go:embed page.html
	listHTML []byte
	//go:embed run.html
	runHTML []byte
	// formatJS is what both pages show the same way, inlined into each
	// where it says {{format.js}}.
	//go:embed format.js
	formatJS string
	// commonCSS is how both pages style alike, inlined into each where it
	// says {{common.css}}.
	//go:embed common.css
	commonCSS string

	// listPage lists every run; runPage shows one run's history.
	listPage = newHTMLPage(listHTML)
	runPage  = newHTMLPage(runHTML)
)

// htmlPage is a page and its Content-Security-Policy: only its own inline
// script and style (allowed by their hashes) run, and it talks only to
// this server.
type htmlPage struct {
	body   []byte
	policy string
}

func newHTMLPage(source []byte) htmlPage {
	body := strings.NewReplacer("{{format.js}}", formatJS, "{{common.css}}", commonCSS).Replace(string(source))
	return htmlPage{body: []byte(body), policy: buildPagePolicy(body)}
}

var (
	inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	inlineStyle  = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
)

func buildPagePolicy(html string) string {
	hashes := func(re *regexp.Regexp) string {
		var out []string
		for _, m := range re.FindAllStringSubmatch(html, -1) {
			sum := sha256.Sum256([]byte(m[1]))
			out = append(out, fmt.Sprintf("'sha256-%s'", base64.StdEncoding.EncodeToString(sum[:])))
		}
		return strings.Join(out, " ")
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src " + hashes(inlineScript),
		"style-src " + hashes(inlineStyle),
		"connect-src 'self'",
		"img-src data:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

func (p htmlPage) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", p.policy)
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(p.body)
}
