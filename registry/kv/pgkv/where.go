package pgkv

import (
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Where names the server(s) and database of a connection string, for
// messages and logs: host:port[,host:port...]/database, without the user
// or the password the string may hold.
func Where(url string) string {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "(the database URL does not parse)"
	}
	cc := cfg.ConnConfig
	hosts := []string{net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))}
	for _, f := range cc.Fallbacks { // sslmode=prefer repeats a host without TLS
		if h := net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port))); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return strings.Join(hosts, ",") + "/" + cc.Database
}
