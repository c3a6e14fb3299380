package pgkv

import (
	"errors"
	"fmt"
	"strings"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/jackc/pgx/v5/pgconn"
)

// isConflict reports a serialisation failure or a deadlock: the
// transaction lost a race and was rolled back.
func isConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isUnavailable reports an error that says the database could not be
// reached or is going away, rather than one about the statement: no
// answer from the server, or a server error of class 08 (connection
// exception), 53 (insufficient resources) or 57P (shutdown).
func isUnavailable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return true
	}
	return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") || strings.HasPrefix(pe.Code, "57P")
}

// isDiskFull reports the server's refusal to write for want of disk
// space (SQLSTATE 53100).
func isDiskFull(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "53100"
}

// dbError classifies an error that left nothing of the transaction kept.
func dbError(what string, err error) error {
	switch {
	case isConflict(err):
		return fmt.Errorf("pgkv %s: %w: %w", what, kv.ErrConflict, err)
	case isDiskFull(err):
		return fmt.Errorf("pgkv %s: %w: %w", what, kv.ErrFull, err)
	case isUnavailable(err):
		return fmt.Errorf("pgkv %s: %w: %w", what, ErrUnavailable, err)
	default:
		return fmt.Errorf("pgkv %s: %w", what, err)
	}
}

// severity is the error's severity in English (Severity is translated by
// the server's lc_messages; SeverityUnlocalized exists since 9.6).
func severity(pe *pgconn.PgError) string {
	if pe.SeverityUnlocalized != "" {
		return pe.SeverityUnlocalized
	}
	return pe.Severity
}
