package badgerkv

// WithFreeSpace has the store read free space from f instead of the
// filesystem.
func WithFreeSpace(o Options, f func() (int64, error)) Options {
	o.freeSpace = f
	return o
}

// WithMemTableSize shrinks Badger's memtables to n bytes.
func WithMemTableSize(o Options, n int64) Options {
	o.memTableSize = n
	return o
}
