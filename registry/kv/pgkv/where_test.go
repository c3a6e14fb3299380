package pgkv_test

import (
	"testing"

	"github.com/iotgate/iotgate/registry/kv/pgkv"
)

func TestWhere(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"postgres://iotgate:s3cret@db1:5433/iotgate?sslmode=disable", "db1:5433/iotgate"},
		{"postgres://iotgate:s3cret@db1,db2:5433/fleet?sslmode=disable&target_session_attrs=read-write", "db1:5432,db2:5433/fleet"},
		{"host=10.0.0.7 user=iotgate password=s3cret dbname=iot sslmode=prefer", "10.0.0.7:5432/iot"},
		{"postgres://[::1", "(the database URL does not parse)"},
	} {
		if got := pgkv.Where(tc.url); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.url, got, tc.want)
		}
	}
}
