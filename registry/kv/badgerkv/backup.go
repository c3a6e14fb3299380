package badgerkv

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// A backup is backupMagic, Badger's backup stream (DB.Backup: every live
// entry, read at one snapshot), then a trailer of the stream's length
// (8 bytes, big-endian) and SHA-256 (32 bytes). Badger's stream has no
// end marker: the trailer is what tells a complete backup from one cut
// at an entry's boundary.
const (
	backupMagic   = "iotgate-badger-backup-1\n"
	backupTrailer = 8 + sha256.Size
)

// ErrBadBackup is a backup that is not one, is cut short or was changed.
var ErrBadBackup = errors.New("badgerkv: not a complete iotgate backup")

// Backup writes a consistent snapshot of the whole database to w, while
// the store keeps serving: the entries committed when it starts, none
// committed later. It returns the bytes written.
func (s *Store) Backup(w io.Writer) (int64, error) {
	if err := s.lost.check(); err != nil {
		return 0, err
	}
	return backup(s.db, w)
}

func backup(db *badger.DB, w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	if _, err := io.WriteString(cw, backupMagic); err != nil {
		return cw.n, err
	}
	h := sha256.New()
	body := &countingWriter{w: io.MultiWriter(cw, h)}
	// One producer: Badger's DB.Backup streams key ranges on several
	// goroutines, each in a read transaction of its own, so writes that
	// commit meanwhile land in some ranges and not others (a device
	// without its counter). One goroutine reads every range in one
	// transaction: one snapshot.
	stream := db.NewStream()
	stream.NumGo = 1
	stream.LogPrefix = "badgerkv.Backup"
	if _, err := stream.Backup(body, 0); err != nil {
		return cw.n, fmt.Errorf("badgerkv: backup: %w", err)
	}
	var t [backupTrailer]byte
	binary.BigEndian.PutUint64(t[:8], uint64(body.n))
	copy(t[8:], h.Sum(nil))
	_, err := cw.Write(t[:])
	return cw.n, err
}

// Restore loads a backup into dir, which must not exist or be empty. The
// entries go to a sibling directory renamed to dir only once the whole
// backup was read and its length and checksum agree, so a failed restore
// leaves dir as it was.
func Restore(dir string, r io.Reader) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("badgerkv: restore: %s is not empty", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("badgerkv: restore: %w", err)
	}
	body, err := openBackup(r)
	if err != nil {
		return err
	}
	tmp := dir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("badgerkv: restore: %w", err)
	}
	db, err := badger.Open(badger.DefaultOptions(tmp).WithLogger(newBadgerLogger(nil)).WithNumVersionsToKeep(1))
	if err != nil {
		return fmt.Errorf("badgerkv: restore: open %s: %w", tmp, err)
	}
	err = db.Load(body, 256)
	if err == nil {
		err = body.verify()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_ = os.Remove(dir) // an empty dir (checked above) gives way
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("badgerkv: restore: %w", err)
	}
	return nil
}

// CheckBackup reads a whole backup and reports whether it is complete
// and unchanged (ErrBadBackup if not).
func CheckBackup(r io.Reader) error {
	body, err := openBackup(r)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	return body.verify()
}

// openBackup reads the magic and returns the stream, which holds back
// the trailer.
func openBackup(r io.Reader) (*backupBody, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(br, magic); err != nil || !bytes.Equal(magic, []byte(backupMagic)) {
		return nil, fmt.Errorf("%w: no iotgate backup header", ErrBadBackup)
	}
	return &backupBody{r: br, h: sha256.New()}, nil
}

// backupBody is the stream between the magic and the trailer: it hands
// out every byte but the last backupTrailer, which it keeps to check
// against what it handed out.
type backupBody struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	tail []byte // the last bytes read, at most backupTrailer of them not yet handed out
	eof  bool
}

func (b *backupBody) Read(p []byte) (int, error) {
	for !b.eof && len(b.tail) <= backupTrailer {
		buf := make([]byte, 32<<10)
		n, err := b.r.Read(buf)
		b.tail = append(b.tail, buf[:n]...)
		if errors.Is(err, io.EOF) {
			b.eof = true
		} else if err != nil {
			return 0, err
		}
	}
	avail := len(b.tail) - backupTrailer
	if avail <= 0 {
		return 0, io.EOF
	}
	n := copy(p, b.tail[:avail])
	b.h.Write(b.tail[:n])
	b.n += int64(n)
	b.tail = b.tail[n:]
	return n, nil
}

// verify checks the trailer once the stream has been read to its end.
func (b *backupBody) verify() error {
	if _, err := io.Copy(io.Discard, b); err != nil {
		return err
	}
	if len(b.tail) != backupTrailer || binary.BigEndian.Uint64(b.tail[:8]) != uint64(b.n) ||
		!bytes.Equal(b.tail[8:], b.h.Sum(nil)) {
		return fmt.Errorf("%w: cut short or changed (length or checksum does not match)", ErrBadBackup)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
