package lwm2mclient

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// SetHooks makes the client call onWrite after each successful Write to
// a path (with the new values stored) and onExecute for an Execute of an
// existing resource, whose code it answers. Both run on the client's
// read loop and must not block; nil removes a hook.
func (c *Client) SetHooks(onWrite func(format.Path), onExecute func(format.Path) codes.Code) {
	c.mu.Lock()
	c.onWrite, c.onExecute = onWrite, onExecute
	c.mu.Unlock()
}

func (c *Client) wrote(p format.Path) {
	c.mu.Lock()
	fn := c.onWrite
	c.mu.Unlock()
	if fn != nil {
		fn(p)
	}
}

// GetBlock asks the server for block num of path's representation with
// Block2 (RFC 7959) at 2^(szx+4) bytes a block, and returns the block,
// whether more follow, and the response's ETag. Each call is its own
// request with its own token, as a device that rebooted mid-download
// sends.
func (c *Client) GetBlock(ctx context.Context, path string, num int, szx uint32) (block []byte, more bool, etag []byte, err error) {
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	m := message.Message{Token: tok, Code: codes.GET, Type: message.Confirmable, MessageID: c.nextMID()}
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		m.Options = m.Options.Add(message.Option{ID: message.URIPath, Value: []byte(seg)})
	}
	m.Options = AddUint(m.Options, message.Block2, uint32(num)<<4|szx)
	r, err := c.roundTrip(ctx, m)
	if err != nil {
		return nil, false, nil, err
	}
	if r.Code != codes.Content {
		return nil, false, nil, &CodeError{Code: r.Code, Diagnostic: string(r.Payload)}
	}
	v, err := r.Options.GetUint32(message.Block2)
	if err != nil {
		return r.Payload, false, nil, nil // the whole representation in one
	}
	if got := int(v >> 4); got != num {
		return nil, false, nil, fmt.Errorf("lwm2mclient: asked for block %d, got %d", num, got)
	}
	etag, _ = r.Options.GetBytes(message.ETag)
	return r.Payload, v&0x8 != 0, etag, nil
}

// Firmware is object 5 (Firmware Update) on a client: it downloads the
// Package URI the server writes with Block2 from the client's own server
// connection (coap, coaps) or with GET and Range (http, https), goes
// through the States 0 (Idle), 1 (Downloading),
// 2 (Downloaded), 3 (Updating) and sets Update Result as LwM2M 1.1
// describes, notifying the server's observations on each change.
type Firmware struct {
	c *Client
	// Result is the Update Result the update ends with (1: success).
	Result int
	// SZX is the block size exponent it asks for (block = 2^(SZX+4)).
	// Over HTTP a block is a read of that many bytes of the body.
	SZX uint32
	// HTTP downloads http(s) Package URIs (set its TLS config for an
	// https one).
	HTTP *http.Client

	mu sync.Mutex
	// image is what it downloaded so far; blocks counts the requests.
	image  []byte
	blocks []int
	// stopAfter, when > 0, interrupts the download after that many blocks
	// (a reboot mid-download); Resume continues it.
	stopAfter int
	uri       string
	done      chan struct{}
	// protocols is /5/0/8 (SetProtocols); ranges the first byte each
	// HTTP GET asked for; etag the last HTTP ETag (If-Range).
	protocols []int
	ranges    []int64
	etag      string
}

// NewFirmware adds object 5 to c, Idle, declaring delivery (/5/0/9: 0
// pull, 1 push, 2 both). Call it before Register.
func NewFirmware(c *Client, delivery int) *Firmware {
	f := &Firmware{c: c, Result: 1, SZX: 2, done: make(chan struct{}), HTTP: &http.Client{Timeout: time.Minute}}
	_ = c.Set("/5/0/1", format.StringValue(""))
	_ = c.Set("/5/0/2", format.StringValue(""))
	f.set(0, 0)
	_ = c.Set("/5/0/9", format.IntegerValue(int64(delivery)))
	c.SetHooks(f.written, f.execute)
	return f
}

// SetProtocols declares /5/0/8 (Firmware Update Protocol Support: 0 CoAP,
// 1 CoAPS, 2 HTTP 1.1, 3 HTTPS 1.1, 4 CoAP over TCP, 5 CoAP over TLS);
// a Package URI of a scheme it does not list then ends in Update Result
// 9 (unsupported protocol). Call it before Register.
func (f *Firmware) SetProtocols(protocols ...int) {
	f.mu.Lock()
	f.protocols = append([]int(nil), protocols...)
	f.mu.Unlock()
	for i, p := range protocols {
		_ = f.c.Set(fmt.Sprintf("/5/0/8/%d", i), format.IntegerValue(int64(p)))
	}
}

// HTTPRanges returns the first byte each HTTP GET of the package asked
// for, in order (0: the whole file).
func (f *Firmware) HTTPRanges() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.ranges...)
}

// StopAfter makes the next download stop after n blocks, as a device
// that reboots mid-way.
func (f *Firmware) StopAfter(n int) {
	f.mu.Lock()
	f.stopAfter = n
	f.mu.Unlock()
}

// Image returns the bytes downloaded so far and the block numbers
// requested, in order.
func (f *Firmware) Image() ([]byte, []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.image...), append([]int(nil), f.blocks...)
}

// Done is closed when an update has ended (Update Result set after an
// Update).
func (f *Firmware) Done() <-chan struct{} { return f.done }

func (f *Firmware) set(state, result int) {
	_ = f.c.Set("/5/0/5", format.IntegerValue(int64(result)))
	_ = f.c.Set("/5/0/3", format.IntegerValue(int64(state)))
}

func (f *Firmware) state() int {
	v, _ := f.c.Value("/5/0/3")
	return int(v.Int())
}

func (f *Firmware) written(p format.Path) {
	switch p {
	case format.NewPath(5, 0, 1):
		v, _ := f.c.Value("/5/0/1")
		f.mu.Lock()
		f.uri, f.image, f.blocks, f.ranges, f.etag = v.Str(), nil, nil, nil, ""
		f.mu.Unlock()
		if v.Str() == "" {
			f.set(0, 0) // an empty URI cancels
			return
		}
		go f.download()
	case format.NewPath(5, 0, 0):
		v, _ := f.c.Value("/5/0/0")
		f.mu.Lock()
		f.image = v.Bytes()
		f.mu.Unlock()
		go f.set(2, 0)
	}
}

func (f *Firmware) execute(p format.Path) codes.Code {
	if p != format.NewPath(5, 0, 2) {
		return codes.Changed
	}
	if f.state() != 2 {
		return codes.MethodNotAllowed
	}
	go func() {
		f.set(3, 0)
		f.set(0, f.Result)
		close(f.done)
	}()
	return codes.Changed
}

// Resume continues an interrupted download from the first block it does
// not have.
func (f *Firmware) Resume() { go f.download() }

// download fetches the Package URI from its current offset.
func (f *Firmware) download() {
	f.mu.Lock()
	uri, protocols := f.uri, f.protocols
	f.mu.Unlock()
	proto := -1
	u, err := url.Parse(uri)
	if err == nil {
		proto = schemeProtocol(u.Scheme)
	}
	switch {
	case proto < 0:
		f.set(0, 7) // invalid URI
		return
	case len(protocols) > 0 && !slices.Contains(protocols, proto):
		f.set(0, 9) // unsupported protocol
		return
	case proto == 2 || proto == 3:
		f.downloadHTTP(uri)
		return
	}
	f.set(1, 0)
	size := 1 << (f.SZX + 4)
	for {
		f.mu.Lock()
		num := len(f.image) / size
		stop := f.stopAfter > 0 && len(f.blocks) >= f.stopAfter
		if stop {
			f.stopAfter = 0
		}
		f.blocks = append(f.blocks, num)
		f.mu.Unlock()
		if stop {
			f.mu.Lock()
			f.blocks = f.blocks[:len(f.blocks)-1]
			f.mu.Unlock()
			return // rebooted: Resume continues
		}
		b, more, _, err := f.c.GetBlock(context.Background(), u.Path, num, f.SZX)
		var ce *CodeError
		switch {
		case errors.As(err, &ce):
			f.set(0, 7)
			return
		case err != nil:
			f.set(0, 4) // connection lost
			return
		}
		f.mu.Lock()
		f.image = append(f.image[:num*size], b...)
		f.mu.Unlock()
		if !more {
			f.set(2, 0)
			return
		}
	}
}

// schemeProtocol is the /5/0/8 value of a scheme the client downloads
// from; -1 for another.
func schemeProtocol(scheme string) int {
	switch scheme {
	case "coap":
		return 0
	case "coaps":
		return 1
	case "http":
		return 2
	case "https":
		return 3
	}
	return -1
}

// downloadHTTP GETs uri from the first byte it does not have (Range,
// If-Range with the ETag of the first answer), reading the body a block
// at a time so StopAfter can cut it as a reboot would.
func (f *Firmware) downloadHTTP(uri string) {
	f.set(1, 0)
	f.mu.Lock()
	from, etag := int64(len(f.image)), f.etag
	f.ranges = append(f.ranges, from)
	f.mu.Unlock()
	req, err := http.NewRequest(http.MethodGet, uri, nil)
	if err != nil {
		f.set(0, 7)
		return
	}
	if from > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
		if etag != "" {
			req.Header.Set("If-Range", etag)
		}
	}
	resp, err := f.HTTP.Do(req)
	if err != nil {
		f.set(0, 4) // connection lost
		return
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var first, last, size int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &size); err != nil || first != from {
			f.set(0, 4)
			return
		}
	case http.StatusOK: // the whole file: the server ignored the range, or the file changed
		from = 0
	default:
		f.set(0, 7) // the URI serves no package
		return
	}
	total := int64(-1)
	if resp.ContentLength >= 0 {
		total = from + resp.ContentLength
	}
	f.mu.Lock()
	f.image, f.etag = f.image[:from], resp.Header.Get("ETag")
	f.mu.Unlock()
	size := 1 << (f.SZX + 4)
	buf := make([]byte, size)
	for {
		f.mu.Lock()
		stop := f.stopAfter > 0 && len(f.blocks) >= f.stopAfter
		if stop {
			f.stopAfter = 0
		}
		f.mu.Unlock()
		if stop {
			return // rebooted: Resume continues
		}
		n, err := io.ReadFull(resp.Body, buf)
		f.mu.Lock()
		if n > 0 {
			f.blocks = append(f.blocks, len(f.image)/size)
			f.image = append(f.image, buf[:n]...)
		}
		got := int64(len(f.image))
		f.mu.Unlock()
		switch {
		case err == nil && got != total:
			continue
		case err == nil, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			if total >= 0 && got != total {
				f.set(0, 4) // the connection ended early
				return
			}
			f.set(2, 0)
			return
		default:
			f.set(0, 4)
			return
		}
	}
}

// Sum is the SHA-256 of the downloaded image.
func (f *Firmware) Sum() [32]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sha256.Sum256(f.image)
}
