package registry

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Device tags (IoTDA's TagV5DTO): key-value labels an application puts on
// a device at creation or update, or binds and unbinds later, and finds
// devices by. They travel in the header of the device's events. Each
// tag is indexed (tg/{project}/{key}/{value}/{seq}), in the same write
// as the device record, so a query reads the matching entries only.

// Tag is a device tag. A tag's key is unique on its device.
type Tag struct {
	Key   string `json:"k"`
	Value string `json:"v,omitempty"`
}

// IoTDA's tag limits.
const (
	MaxTags        = 10  // per device
	MaxTagKeyLen   = 64  // characters
	MaxTagValueLen = 128 // characters
)

// tagText reports whether s uses only what IoTDA allows in tags: Chinese
// characters, letters, digits, '_', '.' and '-'.
func tagText(s string) bool {
	for _, c := range s {
		switch {
		case c < utf8.RuneSelf && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'):
		case unicode.Is(unicode.Han, c):
		default:
			return false
		}
	}
	return true
}

func checkTagKey(field, k string) error {
	if n := utf8.RuneCountInString(k); n == 0 || n > MaxTagKeyLen {
		return invalid(field, "must be 1 to %d characters", MaxTagKeyLen)
	}
	if !tagText(k) {
		return invalid(field, "%q may hold only Chinese characters, letters, digits, '_', '.' and '-'", k)
	}
	return nil
}

func checkTagValue(field, v string) error {
	if utf8.RuneCountInString(v) > MaxTagValueLen {
		return invalid(field, "must be at most %d characters", MaxTagValueLen)
	}
	if !tagText(v) {
		return invalid(field, "%q may hold only Chinese characters, letters, digits, '_', '.' and '-'", v)
	}
	return nil
}

// checkTags validates a list of tags: each well-formed, keys unique, at
// most MaxTags.
func checkTags(field string, tags []Tag) error {
	if len(tags) > MaxTags {
		return invalid(field, "a device has at most %d tags, not %d", MaxTags, len(tags))
	}
	for i, t := range tags {
		if err := checkTagKey(fmt.Sprintf("%s[%d].tag_key", field, i), t.Key); err != nil {
			return err
		}
		if err := checkTagValue(fmt.Sprintf("%s[%d].tag_value", field, i), t.Value); err != nil {
			return err
		}
		for _, u := range tags[:i] {
			if u.Key == t.Key {
				return invalid(field, "tag_key %q is given twice", t.Key)
			}
		}
	}
	return nil
}

// BindTags binds tags to a project device: a key it has already gets the
// new value, others are added, up to MaxTags in all.
func (r *Registry) BindTags(ctx context.Context, project, deviceID string, tags []Tag) (*Device, error) {
	if len(tags) == 0 {
		return nil, invalid("tags", "is required")
	}
	if err := checkTags("tags", tags); err != nil {
		return nil, err
	}
	return r.mutateDevice(ctx, project, deviceID, func(d *Device) error {
		cur := slices.Clone(d.Tags)
		for _, t := range tags {
			if i := slices.IndexFunc(cur, func(c Tag) bool { return c.Key == t.Key }); i >= 0 {
				cur[i].Value = t.Value
			} else {
				cur = append(cur, t)
			}
		}
		if len(cur) > MaxTags {
			return invalid("tags", "a device has at most %d tags: %s would have %d", MaxTags, d.DeviceID, len(cur))
		}
		d.Tags = cur
		return nil
	})
}

// UnbindTags removes tags from a project device by key; every key must be
// one of its tags, given once.
func (r *Registry) UnbindTags(ctx context.Context, project, deviceID string, keys []string) (*Device, error) {
	if len(keys) == 0 {
		return nil, invalid("tag_keys", "is required")
	}
	for i, k := range keys {
		if err := checkTagKey(fmt.Sprintf("tag_keys[%d]", i), k); err != nil {
			return nil, err
		}
		if slices.Contains(keys[:i], k) {
			return nil, invalid("tag_keys", "%q is given twice", k)
		}
	}
	return r.mutateDevice(ctx, project, deviceID, func(d *Device) error {
		cur := slices.Clone(d.Tags)
		for _, k := range keys {
			i := slices.IndexFunc(cur, func(c Tag) bool { return c.Key == k })
			if i < 0 {
				return invalid("tag_keys", "device %s has no tag %q", d.DeviceID, k)
			}
			cur = slices.Delete(cur, i, i+1)
		}
		d.Tags = cur
		if len(d.Tags) == 0 {
			d.Tags = nil
		}
		return nil
	})
}

// TagQuery matches devices with a tag: Key with Value, or with any value
// when Value is nil.
type TagQuery struct {
	Key   string
	Value *string
}

// TaggedList is one page of the devices a tag query matched.
type TaggedList struct {
	DeviceIDs []string
	Count     int64  // all matching devices, not just this page
	Marker    string // marker of the last device returned
}

// maxTagQueries bounds the tags of one query.
const maxTagQueries = MaxTags

// DevicesByTags lists a project's devices that have any of the tags
// queried, newest first, paged as device listings are.
func (r *Registry) DevicesByTags(ctx context.Context, project string, qs []TagQuery, pg Page) (*TaggedList, error) {
	if len(qs) == 0 || len(qs) > maxTagQueries {
		return nil, invalid("tags", "must name 1 to %d tags", maxTagQueries)
	}
	for i, q := range qs {
		if err := checkTagKey(fmt.Sprintf("tags[%d].tag_key", i), q.Key); err != nil {
			return nil, err
		}
		if q.Value != nil {
			if err := checkTagValue(fmt.Sprintf("tags[%d].tag_value", i), *q.Value); err != nil {
				return nil, err
			}
		}
	}
	// Only the page's window (offset+limit devices, newest first, below
	// the marker) is kept while the index is read, so a query of a tag a
	// million devices have holds a few hundred; a query of several tags
	// also remembers the devices it counted, to count each once.
	type hit struct{ seq, dev string }
	window := pg.Offset + max(pg.Limit, 0)
	top := make([]hit, 0, window+1)
	var seen map[string]struct{}
	if len(qs) > 1 {
		seen = make(map[string]struct{})
	}
	var count int64
	newestFirst := func(a, b hit) int { return cmp.Compare(b.seq, a.seq) }
	err := r.view(ctx, func(rd Reader) error {
		for _, q := range qs {
			prefix := prefixKey(famTag, project, q.Key)
			if q.Value != nil {
				prefix = prefixKey(famTag, project, q.Key, *q.Value)
			}
			if err := rd.Scan(prefix, nil, false, func(k, v []byte) (bool, error) {
				if seen != nil {
					if _, dup := seen[string(v)]; dup {
						return true, nil
					}
					seen[string(v)] = struct{}{}
				}
				count++
				// The seq is the key's last part (a value may hold
				// anything but the separator).
				seq := k[lastSep(k)+1:]
				if pg.Marker != "" && string(seq) >= pg.Marker {
					return true, nil
				}
				if window == 0 || len(top) == window && string(seq) <= top[window-1].seq {
					return true, nil
				}
				h := hit{seq: string(seq), dev: string(v)}
				i, _ := slices.BinarySearchFunc(top, h, newestFirst)
				top = slices.Insert(top, i, h)
				if len(top) > window {
					top = top[:window]
				}
				return true, nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := &TaggedList{Count: count, DeviceIDs: []string{}}
	for _, h := range top[min(pg.Offset, len(top)):] {
		out.DeviceIDs = append(out.DeviceIDs, h.dev)
		out.Marker = h.seq
	}
	return out, nil
}

func lastSep(k []byte) int {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == sep {
			return i
		}
	}
	return -1
}

// syncTagIndex keeps a device's tag index entries in step with its record
// (old nil: created; d nil: deleted).
func syncTagIndex(w Writer, old, d *Device) error {
	var before, after []Tag
	if old != nil {
		before = old.Tags
	}
	if d != nil {
		after = d.Tags
	}
	if slices.Equal(before, after) {
		return nil
	}
	for _, t := range before {
		if d == nil || !slices.Contains(after, t) {
			if err := w.Delete(tagKey(old.ProjectID, t, old.Seq)); err != nil {
				return err
			}
		}
	}
	for _, t := range after {
		if old == nil || !slices.Contains(before, t) {
			if err := w.Set(tagKey(d.ProjectID, t, d.Seq), []byte(d.DeviceID)); err != nil {
				return err
			}
		}
	}
	return nil
}

func tagKey(project string, t Tag, seq string) []byte {
	return key(famTag, project, t.Key, t.Value, seq)
}

// eventTags returns a device's tags as its events carry them.
func eventTags(d *Device) []EventTag {
	out := make([]EventTag, len(d.Tags))
	for i, t := range d.Tags {
		out[i] = EventTag{Key: t.Key, Value: t.Value}
	}
	return out
}
