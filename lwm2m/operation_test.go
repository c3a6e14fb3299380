package lwm2m

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// bodyFor encodes op's values for a client of LwM2M version v that
// declared the formats ct ("" none).
func bodyFor(t *testing.T, op *Operation, v, ct string) (uint16, []byte) {
	t.Helper()
	r := &Registration{Version: v}
	if ct != "" {
		var err error
		if r.Formats, err = format.ParseContentFormats(ct); err != nil {
			t.Fatal(err)
		}
	}
	f, b, err := op.body(r)
	if err != nil {
		t.Fatal(err)
	}
	return f, b
}

func TestLwM2MCommandOperation(t *testing.T) {
	for _, tc := range []struct {
		name, service, command, paras string
		check                         func(t *testing.T, op *Operation)
		err                           string
	}{
		{"read", "LwM2M", "READ", `{"path":"/3/0/0"}`, func(t *testing.T, op *Operation) {
			if op.Name != OpRead || op.Path != format.NewPath(3, 0, 0) || op.Accept != -1 {
				t.Fatalf("%+v", op)
			}
		}, ""},
		{"read accept", "LwM2M", "READ", `{"path":"/3/0","accept":11542}`, func(t *testing.T, op *Operation) {
			if op.Accept != 11542 {
				t.Fatalf("%+v", op)
			}
		}, ""},
		{"write text", "LwM2M", "WRITE", `{"path":"/3/0/14","value":"+08:00"}`, func(t *testing.T, op *Operation) {
			ct, b := bodyFor(t, op, "1.1", "110")
			if ct != format.FormatText || string(b) != "+08:00" || op.Partial {
				t.Fatalf("%+v", op)
			}
		}, ""},
		{"write integer by model", "LwM2M", "WRITE", `{"path":"/1/0/1","value":300}`, func(t *testing.T, op *Operation) {
			if ct, b := bodyFor(t, op, "", ""); ct != format.FormatText || string(b) != "300" {
				t.Fatalf("%+v %q", op, b)
			}
		}, ""},
		{"write opaque by model", "LwM2M", "WRITE", `{"path":"/19/1/0","value":"AQID"}`, func(t *testing.T, op *Operation) {
			if ct, b := bodyFor(t, op, "1.1", "112"); ct != format.FormatOpaque || string(b) != "\x01\x02\x03" {
				t.Fatalf("%+v", op)
			}
		}, ""},
		{"write several, partial, to a 1.0 client", "LwM2M", "WRITE", `{"path":"/1/0","mode":"update","values":[{"path":"/1/0/1","value":60},{"path":"/1/0/7","value":"UQ"}]}`, func(t *testing.T, op *Operation) {
			ct, b := bodyFor(t, op, "1.0", "")
			if ct != format.FormatTLV || !op.Partial {
				t.Fatalf("%+v", op)
			}
			recs, err := format.Decode(format.FormatTLV, op.Path, b, format.DefaultModel())
			if err != nil || len(recs) != 2 || recs[0].Value.Int() != 60 || recs[1].Value.Str() != "UQ" {
				t.Fatalf("%v %v", recs, err)
			}
		}, ""},
		{"write explicit format", "LwM2M", "WRITE", `{"path":"/3/0/14","value":"x","content_format":110}`, func(t *testing.T, op *Operation) {
			if op.ContentFormat != format.FormatSenMLJSON || !strings.Contains(string(op.Payload), `"vs":"x"`) {
				t.Fatalf("%+v %s", op, op.Payload)
			}
		}, ""},
		{"execute", "LwM2M", "EXECUTE", `{"path":"/3/0/4","args":"0='x'"}`, func(t *testing.T, op *Operation) {
			if op.Args != "0='x'" {
				t.Fatalf("%+v", op)
			}
		}, ""},
		{"attributes", "LwM2M", "WRITE_ATTRIBUTES", `{"path":"/3/0/9","attributes":{"pmin":10,"pmax":60,"gt":null}}`, func(t *testing.T, op *Operation) {
			if strings.Join(op.Attributes, "&") != "gt&pmax=60&pmin=10" {
				t.Fatalf("%v", op.Attributes)
			}
		}, ""},
		{"create", "LwM2M", "CREATE", `{"path":"/3303","values":[{"path":"/3303/1/5700","value":1.5,"kind":"Float"}]}`, func(t *testing.T, op *Operation) {
			if ct, b := bodyFor(t, op, "1.1", "110"); ct != format.FormatSenMLJSON || !strings.Contains(string(b), `"n":"1/5700","v":1.5`) {
				t.Fatalf("%+v %s", op, b)
			}
		}, ""},
		{"other service", "Meter", "SET", `{"value": 1}`, func(t *testing.T, op *Operation) {
			if op.Path != appCommandPath || op.ContentFormat != format.FormatOpaque || string(op.Payload) != `{"value":1}` {
				t.Fatalf("%+v %q", op, op.Payload)
			}
		}, ""},
		{"other service base64", "", "", `{"data":"3q2+7w=="}`, func(t *testing.T, op *Operation) {
			if string(op.Payload) != "\xde\xad\xbe\xef" {
				t.Fatalf("%q", op.Payload)
			}
		}, ""},
		{"data not base64 is text", "", "", `{"data":"not base64!"}`, func(t *testing.T, op *Operation) {
			if string(op.Payload) != `{"data":"not base64!"}` {
				t.Fatalf("%q", op.Payload)
			}
		}, ""},
		{"unknown op", "LwM2M", "REBOOT", `{"path":"/3/0/4"}`, nil, "unknown LwM2M command_name"},
		{"missing path", "LwM2M", "READ", `{}`, nil, "path is required"},
		{"bad path", "LwM2M", "READ", `{"path":"3/0"}`, nil, "must start with '/'"},
		{"unknown field", "LwM2M", "READ", `{"path":"/3/0","pth":1}`, nil, "unknown field"},
		{"execute on instance", "LwM2M", "EXECUTE", `{"path":"/3/0"}`, nil, "resource path"},
		{"delete resource", "LwM2M", "DELETE", `{"path":"/3/0/1"}`, nil, "object instance path"},
		{"write without value", "LwM2M", "WRITE", `{"path":"/3/0/14"}`, nil, "needs value"},
		{"write on object", "LwM2M", "WRITE", `{"path":"/3","value":1}`, nil, "instance or resource"},
		{"write value and values", "LwM2M", "WRITE", `{"path":"/3/0/14","value":"a","values":[{"value":"b"}]}`, nil, "not both"},
		{"write outside path", "LwM2M", "WRITE", `{"path":"/1/0","values":[{"path":"/3/0/1","value":1}]}`, nil, "not a resource under"},
		{"write wrong kind", "LwM2M", "WRITE", `{"path":"/1/0/1","value":"soon"}`, nil, "values[0]"},
		{"write unknown kind", "LwM2M", "WRITE", `{"path":"/3/0/14","value":"a","kind":"Color"}`, nil, "unknown kind"},
		{"bad mode", "LwM2M", "WRITE", `{"path":"/3/0/14","value":"a","mode":"merge"}`, nil, "mode"},
		{"bad attribute", "LwM2M", "WRITE_ATTRIBUTES", `{"path":"/3/0/9","attributes":{"every":1}}`, nil, "unknown attribute"},
		{"attribute not number", "LwM2M", "WRITE_ATTRIBUTES", `{"path":"/3/0/9","attributes":{"pmin":"1"}}`, nil, "number or null"},
		{"bad accept", "LwM2M", "READ", `{"path":"/3/0","accept":70000}`, nil, "accept"},
		{"not json", "LwM2M", "READ", `nope`, nil, "LwM2M paras"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, err := commandOperation(tc.service, tc.command, json.RawMessage(tc.paras))
			if tc.err != "" {
				var ve *registry.ValidationError
				if !errors.As(err, &ve) || ve.Field != "paras" || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want a paras error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, op)
		})
	}
}

func TestLwM2MResultOf(t *testing.T) {
	read := &Operation{Name: OpRead, Path: format.NewPath(3, 0, 0)}
	res, ok := resultOf(read, &Response{Code: codes.Content, ContentFormat: -1, Payload: []byte("Acme")})
	if !ok || res.Code != "2.05" || len(res.Values) != 1 || res.Values[0].Value.Str() != "Acme" || res.ContentFormat != nil {
		t.Fatalf("%+v", res)
	}
	res, ok = resultOf(read, &Response{Code: codes.Content, ContentFormat: int(format.FormatTLV), Payload: []byte{0xff}})
	if !ok || res.DecodeError == "" || string(res.Payload) != "\xff" {
		t.Fatalf("undecodable: %+v", res)
	}
	res, ok = resultOf(read, &Response{Code: codes.NotFound, ContentFormat: 0, Payload: []byte("no such resource")})
	if ok || res.Code != "4.04" || res.Diagnostic != "no such resource" {
		t.Fatalf("failure: %+v", res)
	}
	res, ok = resultOf(&Operation{Name: OpCreate, Path: format.NewPath(3303)}, &Response{Code: codes.Created, ContentFormat: -1, Location: "/3303/1"})
	if !ok || res.Location != "/3303/1" {
		t.Fatalf("create: %+v", res)
	}
	res, _ = resultOf(&Operation{Name: OpDiscover, Path: format.NewPath(3, 0)}, &Response{Code: codes.Content, ContentFormat: 40, Payload: []byte(`</3/0/0>,</3/0/9>;pmin=10`)})
	if len(res.Links) != 2 || res.Links[1].Params["pmin"] != "10" {
		t.Fatalf("discover: %+v", res)
	}
	if got := codeString(codes.PreconditionFailed); got != "4.12" {
		t.Fatalf("codeString: %s", got)
	}
}

// FuzzCommandOperation: whatever an application posts as paras is either
// refused as a paras validation error or yields a sendable operation.
func FuzzLwM2MCommandOperation(f *testing.F) {
	for _, s := range []string{`{"path":"/3/0/0"}`, `{"path":"/1/0","values":[{"path":"/1/0/1","value":5}]}`, `{"path":"/3/0/9","attributes":{"pmin":1}}`, `{"data":"AA=="}`, `[]`, `{"path":"/3303","values":[{"path":"/3303/0/1","value":true}]}`} {
		for _, name := range []string{"READ", "WRITE", "CREATE", "WRITE_ATTRIBUTES", "EXECUTE", "DELETE"} {
			f.Add("LwM2M", name, s)
		}
		f.Add("Other", "", s)
	}
	for _, s := range []string{`{"paths":["/3/0/0","/1/0"]}`, `{"paths":["/3/0"],"accept":110}`, `{"values":[{"path":"/1/0/1","value":5}],"content_format":112}`} {
		for _, name := range []string{OpReadComposite, OpObserveComposite, OpCancelObserveComposite, OpWriteComposite} {
			f.Add("LwM2M", name, s)
		}
	}
	f.Fuzz(func(t *testing.T, service, name, paras string) {
		op, err := commandOperation(service, name, json.RawMessage(paras))
		if err != nil {
			var ve *registry.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		switch {
		case isComposite(op.Name):
			if op.Path.Depth() != 0 || len(op.Paths)+len(op.Records) == 0 {
				t.Fatalf("composite operation without paths or values: %+v", op)
			}
		case op.Path.Depth() == 0:
			t.Fatalf("operation on the root: %+v", op)
		}
	})
}
