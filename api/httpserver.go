package api

import (
	"crypto/tls"
	"log/slog"
	"net/http"
)

// HTTPServer returns an http.Server for the API with the limits'
// timeouts and header cap; tc, when not nil, serves TLS (ServeTLS with
// empty file names). HTTP/2 is not offered: the slow-client defences
// here are HTTP/1's, and the IoTDA and Alibaba SDKs speak HTTP/1.1.
// net/http's own complaints (TLS handshake errors, timeouts) go to the
// log at debug, so a flood of bad clients cannot fill the disk.
func (s *Server) HTTPServer(tc *tls.Config) *http.Server {
	l := s.limits
	return &http.Server{
		Handler:           s,
		TLSConfig:         tc,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}
