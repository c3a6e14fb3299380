package pgkv

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors that left nothing written are told apart by what the caller
// should do: re-run (conflict), wait for space (full), wait for the
// database (unavailable), or nothing (a refusal of the statement).
func TestDBErrorClasses(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code} }
	for _, c := range []struct {
		name string
		err  error
		want error // nil: none of the classes
	}{
		{"serialisation failure", pg("40001"), kv.ErrConflict},
		{"deadlock", pg("40P01"), kv.ErrConflict},
		{"disk full", pg("53100"), kv.ErrFull},
		{"out of memory", pg("53200"), ErrUnavailable},
		{"too many connections", pg("53300"), ErrUnavailable},
		{"connection failure", pg("08006"), ErrUnavailable},
		{"admin shutdown", pg("57P01"), ErrUnavailable},
		{"cannot connect now", pg("57P03"), ErrUnavailable},
		{"no answer", io.ErrUnexpectedEOF, ErrUnavailable},
		{"timeout", context.DeadlineExceeded, ErrUnavailable},
		{"unique violation", pg("23505"), nil},
		{"syntax error", pg("42601"), nil},
	} {
		got := dbError("write", c.err)
		if !errors.Is(got, c.err) {
			t.Errorf("%s: %v does not wrap the cause", c.name, got)
		}
		for _, class := range []error{kv.ErrConflict, kv.ErrFull, ErrUnavailable, ErrCommitUnknown} {
			if errors.Is(got, class) != (class == c.want) {
				t.Errorf("%s: %v: is %v = %v", c.name, got, class, errors.Is(got, class))
			}
		}
	}
}
