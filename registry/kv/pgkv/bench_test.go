package pgkv_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
	"github.com/iotgate/iotgate/registry/kv/pgkv"
)

// BenchmarkCreateLike compares the engines on the registry's typical
// write, a device create, from 64 goroutines: 3 Gets (the product, the
// node id's index entry, found absent, and one shard of the product's
// device counter) and 5 Sets (the record, three index entries, the
// counter). Both engines are durable (Badger with synchronous writes,
// PostgreSQL with fsync on), on the same disk, in the same run.
func BenchmarkCreateLike(b *testing.B) {
	b.Run("engine=badgerkv", func(b *testing.B) {
		s, err := badgerkv.Open(badgerkv.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchCreates(b, s)
	})
	b.Run("engine=pgkv", func(b *testing.B) {
		s, err := openDir(b, b.TempDir(), pgkv.Options{MaxConns: 8})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchCreates(b, s)
		st := s.Stats()
		b.ReportMetric(float64(st.Ops)/float64(max(st.Commits, 1)), "updates/commit")
	})
}

func benchCreates(b *testing.B, s kv.Store) {
	ctx := context.Background()
	product := []byte("bench/product/p1")
	if err := s.Update(ctx, func(t kv.Txn) error { return t.Set(product, make([]byte, 200)) }); err != nil {
		b.Fatal(err)
	}
	record := make([]byte, 300)
	var seq atomic.Int64
	b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			id := fmt.Sprintf("dev%010d", i)
			err := kv.ErrConflict
			for errors.Is(err, kv.ErrConflict) {
				err = s.Update(ctx, func(t kv.Txn) error {
					if _, err := t.Get(product); err != nil {
						return err
					}
					node := []byte("bench/node/p1/" + id)
					if _, err := t.Get(node); !errors.Is(err, kv.ErrNotFound) {
						return fmt.Errorf("node id index: %v", err)
					}
					shard := []byte(fmt.Sprintf("bench/count/p1/%x", i%16))
					var n uint64
					if v, err := t.Get(shard); err == nil {
						n = binary.BigEndian.Uint64(v)
					} else if !errors.Is(err, kv.ErrNotFound) {
						return err
					}
					for _, k := range []string{"bench/dev/" + id, "bench/name/p1/" + id, "bench/deadline/" + id} {
						if err := t.Set([]byte(k), record); err != nil {
							return err
						}
					}
					if err := t.Set(node, []byte(id)); err != nil {
						return err
					}
					return t.Set(shard, binary.BigEndian.AppendUint64(nil, n+1))
				})
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkViewGet is a cache miss on a hot path: one View reading one
// key, one at a time.
func BenchmarkViewGet(b *testing.B) {
	run := func(b *testing.B, s kv.Store) {
		ctx := context.Background()
		k := []byte("bench/dev/d1")
		if err := s.Update(ctx, func(t kv.Txn) error { return t.Set(k, make([]byte, 300)) }); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if err := s.View(ctx, func(r kv.Reader) error { _, err := r.Get(k); return err }); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("engine=badgerkv", func(b *testing.B) {
		s, err := badgerkv.Open(badgerkv.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
	b.Run("engine=pgkv", func(b *testing.B) {
		s, err := openDir(b, b.TempDir(), pgkv.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
}
