package lwm2m

// Conns is the number of go-coap connections (NoSec addresses and DTLS
// sessions) the server holds open.
func (s *Server) Conns() int64 { return s.conns.Load() }
