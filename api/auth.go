package api

import (
	"crypto/subtle"
	"errors"
	"io"
	"net/http"

	"github.com/iotgate/iotgate/api/aksk"
	"github.com/labstack/echo/v4"
)

const (
	credentialKey = "iotgate.credential"
	bodyKey       = "iotgate.body" // []byte: the request body, read by authenticate
)

// readBody reads a request body of at most maxBody bytes, into a buffer
// of exactly the announced size when there is one.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, maxBody)
	var body []byte
	var err error
	if n := r.ContentLength; n >= 0 && n <= maxBody {
		// net/http's body ends after Content-Length bytes.
		body = make([]byte, n)
		_, err = io.ReadFull(rd, body)
	} else {
		body, err = io.ReadAll(rd)
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: codeBadFormat, Msg: "request body exceeds 2 MB"}
	case err != nil:
		return nil, &apiError{Status: http.StatusBadRequest, Code: codeBadFormat, Msg: "request body could not be read: " + err.Error()}
	}
	return body, nil
}

// authenticate accepts a request signed with a configured AK/SK or
// carrying a configured X-Auth-Token, and only for the credential's own
// project: a tenant can neither read nor write another's.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		body, err := readBody(c.Response(), r)
		if err != nil {
			return err
		}
		// The signature covers the body, so it is read here, once; the
		// handlers decode these bytes (bodyKey) rather than read again.
		c.Set(bodyKey, body)

		var cred *Credential
		if tok := r.Header.Get("X-Auth-Token"); tok != "" {
			cred = s.tokenCredential(tok)
			if cred == nil {
				return &apiError{Status: http.StatusForbidden, Code: codeInvalidToken, Msg: "Invalid access token."}
			}
		} else {
			ak, err := s.verifier.Verify(r, body)
			if err != nil {
				msg := "The request is unauthorized: " + err.Error()
				if errors.Is(err, aksk.ErrMissing) {
					msg = "The request is unauthorized: sign it with AK/SK (SDK-HMAC-SHA256) or send X-Auth-Token."
				}
				return &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: msg}
			}
			cred = s.byAK[ak]
		}
		if c.Param("project_id") != cred.ProjectID {
			return &apiError{Status: http.StatusForbidden, Code: codeForbidden,
				Msg: "The credential is not authorized for project " + c.Param("project_id") + "."}
		}
		c.Set(credentialKey, cred)
		return next(c)
	}
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
