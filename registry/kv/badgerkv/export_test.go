package badgerkv

// WithFreeSpace has the store read free space from f instead of the
// filesystem.
func WithFreeSpace(o Options, f func() (int64, error)) Options {
	o.freeSpace = f
	return o
}
