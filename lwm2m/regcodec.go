package lwm2m

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
)

// The stored form of a registration (the data of its session record, see
// persist.go): compact and allocation-light, as a register storm encodes
// one per device. Version 1 is, in order: the version byte; the
// registration id, endpoint, device id, LwM2M version, binding, SMS
// number, root path and last address (each a uvarint length and the
// bytes); a flags byte (queue mode, secure); the lifetime (uvarint
// seconds); the registration and update times (varint unix ns); the
// declared formats (uvarint); the object links (a uvarint count, then
// each path's four ids as varints and its version); the observations (a
// uvarint count, then each token and path as above). Version 2 adds,
// after those, the composite observations (a uvarint count, at least 1,
// then each token, a uvarint count of paths and the paths); it is written
// only for a registration that has some, so the others stay readable by
// a server that knows version 1 only.
const (
	regCodecVersion          = 1
	regCodecVersionComposite = 2
)

const (
	flagQueue = 1 << iota
	flagSecure
)

// savedObservation is an observation as stored: enough to match the
// client's notifications to it after a restart.
type savedObservation struct {
	token string
	path  format.Path
	// paths are a composite observation's (its path is then the root).
	paths []format.Path
}

// errCorruptRegistration: a stored registration could not be decoded.
var errCorruptRegistration = errors.New("corrupt stored registration")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendPath(b []byte, p format.Path) []byte {
	b = binary.AppendVarint(b, int64(p.Object))
	b = binary.AppendVarint(b, int64(p.Instance))
	b = binary.AppendVarint(b, int64(p.Resource))
	return binary.AppendVarint(b, int64(p.ResourceInstance))
}

// encodeRegistration appends r and its observations to b.
func encodeRegistration(b []byte, r *Registration, obs []savedObservation) []byte {
	composite := 0
	for _, o := range obs {
		if o.paths != nil {
			composite++
		}
	}
	single := len(obs) - composite
	if composite == 0 {
		b = append(b, regCodecVersion)
	} else {
		b = append(b, regCodecVersionComposite)
	}
	for _, s := range [...]string{r.ID, r.Endpoint, r.DeviceID, r.Version, r.Binding, r.SMS, r.RootPath, r.Addr} {
		b = appendString(b, s)
	}
	var flags byte
	if r.QueueMode {
		flags |= flagQueue
	}
	if r.Secure {
		flags |= flagSecure
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(r.Lifetime/time.Second))
	b = binary.AppendVarint(b, r.RegisteredAt.UnixNano())
	b = binary.AppendVarint(b, r.UpdatedAt.UnixNano())
	b = binary.AppendUvarint(b, uint64(r.Formats))
	b = binary.AppendUvarint(b, uint64(len(r.Objects)))
	for _, o := range r.Objects {
		b = appendPath(b, o.Path)
		b = appendString(b, o.Version)
	}
	b = binary.AppendUvarint(b, uint64(single))
	for _, o := range obs {
		if o.paths == nil {
			b = appendString(b, o.token)
			b = appendPath(b, o.path)
		}
	}
	if composite == 0 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(composite))
	for _, o := range obs {
		if o.paths != nil {
			b = appendString(b, o.token)
			b = binary.AppendUvarint(b, uint64(len(o.paths)))
			for _, p := range o.paths {
				b = appendPath(b, p)
			}
		}
	}
	return b
}

// regDecoder reads the fields of an encoded registration; the first
// error sticks.
type regDecoder struct {
	b   []byte
	err error
}

func (d *regDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errCorruptRegistration, what)
	}
}

func (d *regDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *regDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *regDecoder) string(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if uint64(len(d.b)) < n {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *regDecoder) path(what string) format.Path {
	var ids [4]int32
	for i := range ids {
		v := d.varint(what)
		if v < -1 || v > 65535 {
			d.fail(what)
		}
		ids[i] = int32(v)
	}
	return format.Path{Object: ids[0], Instance: ids[1], Resource: ids[2], ResourceInstance: ids[3]}
}

// count reads a list's length, bounded by max and by what is left.
func (d *regDecoder) count(what string, max int) int {
	n := d.uvarint(what)
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.fail(what)
		return 0
	}
	return int(n)
}

// decodeRegistration reads what encodeRegistration wrote.
func decodeRegistration(b []byte) (*Registration, []savedObservation, error) {
	if len(b) == 0 || (b[0] != regCodecVersion && b[0] != regCodecVersionComposite) {
		return nil, nil, fmt.Errorf("%w: unknown version", errCorruptRegistration)
	}
	version := b[0]
	d := &regDecoder{b: b[1:]}
	r := &Registration{}
	for _, f := range [...]struct {
		to   *string
		name string
	}{{&r.ID, "id"}, {&r.Endpoint, "endpoint"}, {&r.DeviceID, "device"}, {&r.Version, "version"},
		{&r.Binding, "binding"}, {&r.SMS, "sms"}, {&r.RootPath, "root path"}, {&r.Addr, "address"}} {
		*f.to = d.string(f.name)
	}
	if d.err == nil && len(d.b) == 0 {
		d.fail("flags")
	}
	if d.err == nil {
		r.QueueMode, r.Secure = d.b[0]&flagQueue != 0, d.b[0]&flagSecure != 0
		d.b = d.b[1:]
	}
	r.Lifetime = time.Duration(d.uvarint("lifetime")) * time.Second
	r.RegisteredAt = time.Unix(0, d.varint("registered")).UTC()
	r.UpdatedAt = time.Unix(0, d.varint("updated")).UTC()
	r.Formats = format.Set(d.uvarint("formats"))
	if n := d.count("objects", maxObjectLinks); n > 0 {
		r.Objects = make([]ObjectLink, n)
		for i := range r.Objects {
			r.Objects[i].Path = d.path("object path")
			r.Objects[i].Version = d.string("object version")
		}
	}
	var obs []savedObservation
	if n := d.count("observations", 1<<16); n > 0 {
		obs = make([]savedObservation, n)
		for i := range obs {
			obs[i].token = d.string("token")
			obs[i].path = d.path("observed path")
		}
	}
	if version == regCodecVersionComposite {
		n := d.count("composite observations", 1<<16)
		if n == 0 {
			d.fail("no composite observations in a version 2 record")
		}
		for range n {
			o := savedObservation{token: d.string("token"), path: format.NewPath()}
			np := d.count("composite paths", maxCompositePaths)
			if np == 0 {
				d.fail("a composite observation without paths")
			}
			for range np {
				o.paths = append(o.paths, d.path("composite path"))
			}
			if d.err != nil {
				break
			}
			obs = append(obs, o)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	return r, obs, nil
}
