package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// tokenCheck guards the actions with the worker's --http-token. Without a
// token the server is read-only.
type tokenCheck struct {
	// sum is the SHA-256 of the token; comparing digests of equal length
	// keeps the comparison's time independent of the token's length too.
	sum [sha256.Size]byte
	set bool
}

func newTokenCheck(token string) tokenCheck {
	if token == "" {
		return tokenCheck{}
	}
	return tokenCheck{sum: sha256.Sum256([]byte(token)), set: true}
}

// authorize answers the request itself and returns false unless it may act:
// 403 when no token is configured, 401 when its bearer token is missing or
// wrong.
func (c tokenCheck) authorize(w http.ResponseWriter, r *http.Request) bool {
	if !c.set {
		textError(w, http.StatusForbidden, "read-only: actions need the worker to be started with --http-token (HTTP_TOKEN)")
		return false
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="backfill"`)
		textError(w, http.StatusUnauthorized, "missing token: send Authorization: Bearer TOKEN")
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(sum[:], c.sum[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="backfill", error="invalid_token"`)
		textError(w, http.StatusUnauthorized, "wrong token")
		return false
	}
	return true
}
