package api

import (
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iotgate/iotgate/api/aksk"
	"github.com/labstack/echo/v4"
)

const (
	credentialKey = "iotgate.credential"
	bodyKey       = "iotgate.body" // []byte: the request body, read by authenticate
)

// IoTDA's answer to a body over the limit (documented for its
// device-side HTTPS API, 1 MB there); ours names the configured size.
const codeBodyTooLarge = "IOTDA.021105"

func (s *Server) bodyTooLarge() *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Code: codeBodyTooLarge,
		Msg: "The content reported in a single request cannot exceed " + strconv.FormatInt(s.limits.MaxBodyBytes, 10) + " bytes."}
}

// readBody reads a request body of at most MaxBodyBytes, into a buffer of
// exactly the announced size when there is one; the result is not nil,
// even for an empty body (authenticate relies on it). A Content-Length
// over the limit is refused before a byte of the body is read.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.limits.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, s.bodyTooLarge()
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	var body []byte
	var err error
	if n := r.ContentLength; n >= 0 {
		// net/http's body ends after Content-Length bytes.
		body = make([]byte, n)
		_, err = io.ReadFull(rd, body)
	} else {
		body, err = io.ReadAll(rd)
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, s.bodyTooLarge()
	case err != nil:
		return nil, &apiError{Status: http.StatusBadRequest, Code: codeBadFormat, Msg: "request body could not be read: " + err.Error()}
	}
	return body, nil
}

// authenticate accepts a request signed with a configured AK/SK or
// carrying a configured X-Auth-Token, and only for the credential's own
// project: a tenant can neither read nor write another's.
//
// Abuse limits come first: an address whose unauthenticated bucket is
// empty is refused before its body is read or a signature checked; a
// failed authentication takes a token from that bucket; an
// authenticated request takes one from its credential's bucket (only
// then, so nobody can spend a tenant's rate by naming its AK).
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		now := time.Now()
		addr := clientAddr(r.RemoteAddr)
		// A banned address (by hand, or for failing authentications on
		// any listener) is refused before anything else is looked at.
		if s.bans != nil && s.bans.AddressBanned(addr) {
			s.refusals.refused(now, "api request refused: address banned", "addr", addr)
			return errAddressBanned
		}
		if blocked, wait := s.unauth.blocked(addr, now); blocked {
			s.refusals.refused(now, "api request refused: address over its unauthenticated rate", "addr", addr)
			return rateLimited(c, wait)
		}
		if r.ContentLength > s.limits.MaxBodyBytes {
			s.refusals.refused(now, "api request refused: body too large", "addr", addr, "content_length", r.ContentLength)
			return s.bodyTooLarge()
		}
		cred, body, err := s.credential(c)
		if err != nil {
			s.unauth.take(addr, now)
			// Failed authentications count against the address, as on
			// the device listeners; not against the access key claimed,
			// which anyone may name (a ban of it would lock its owner out).
			if s.bans != nil && authFailure(err) && s.bans.AuthFailed("", addr) {
				s.log.Info("api: address banned after failed authentications", "addr", addr)
			}
			// The access key names who was claimed; a token is a secret.
			s.refusals.refused(now, "api authentication failed", "addr", addr, "err", err, "access_key", claimedAK(r))
			return err
		}
		if b := s.byCred[cred]; b != nil {
			if ok, wait := take(b, now); !ok {
				s.refusals.refused(now, "api request refused: credential over its rate", "addr", addr, "project_id", cred.ProjectID)
				return rateLimited(c, wait)
			}
		}
		if c.Param("project_id") != cred.ProjectID {
			return &apiError{Status: http.StatusForbidden, Code: codeForbidden,
				Msg: "The credential is not authorized for project " + c.Param("project_id") + "."}
		}
		if body == nil { // a token request: its body is read only now
			if body, err = s.readBody(c.Response(), r); err != nil {
				return err
			}
		}
		// The handlers decode these bytes (bodyKey) rather than read
		// the body again.
		c.Set(bodyKey, body)
		c.Set(credentialKey, cred)
		return next(c)
	}
}

// errAddressBanned answers every request from a banned address.
var errAddressBanned = &apiError{Status: http.StatusForbidden, Code: codeForbidden, Msg: "The request is forbidden."}

// authFailure reports whether err refused the request's credential (not
// its body's size or an I/O error).
func authFailure(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && (ae.Code == codeInvalidToken || ae.Code == codeUnauthorized)
}

// credential finds the request's credential: a token is checked before
// the body is read; an AK/SK signature covers the body, which is then
// read (bounded) and returned.
func (s *Server) credential(c echo.Context) (*Credential, []byte, error) {
	r := c.Request()
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		cred := s.tokenCredential(tok)
		if cred == nil {
			return nil, nil, &apiError{Status: http.StatusForbidden, Code: codeInvalidToken, Msg: "Invalid access token."}
		}
		return cred, nil, nil
	}
	body, err := s.readBody(c.Response(), r)
	if err != nil {
		return nil, nil, err
	}
	ak, err := s.verifier.Verify(r, body)
	if err != nil {
		msg := "The request is unauthorized: " + err.Error()
		if errors.Is(err, aksk.ErrMissing) {
			msg = "The request is unauthorized: sign it with AK/SK (SDK-HMAC-SHA256) or send X-Auth-Token."
		}
		return nil, nil, &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: msg}
	}
	return s.byAK[ak], body, nil
}

// claimedAK is the Access= of an Authorization header, for the log only
// (bounded, so a forged header cannot make long lines).
func claimedAK(r *http.Request) string {
	_, after, ok := strings.Cut(r.Header.Get("Authorization"), "Access=")
	if !ok {
		return ""
	}
	ak, _, _ := strings.Cut(after, ",")
	if len(ak) > 64 {
		ak = ak[:64]
	}
	return strings.TrimSpace(ak)
}

// tokenCredential finds a token in constant time per configured token, so
// response timing does not reveal how much of a guess was right.
func (s *Server) tokenCredential(tok string) *Credential {
	var found *Credential
	for t, c := range s.byToken {
		if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
			found = c
		}
	}
	return found
}

func project(c echo.Context) string { return c.Get(credentialKey).(*Credential).ProjectID }
