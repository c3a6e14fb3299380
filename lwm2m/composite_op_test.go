package lwm2m

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
)

func TestLwM2MCompositeParas(t *testing.T) {
	for _, tc := range []struct {
		name, command, paras string
		check                func(t *testing.T, op *Operation)
		err                  string
	}{
		{"read", OpReadComposite, `{"paths":["/3/0/0","/1/0"]}`, func(t *testing.T, op *Operation) {
			if op.Path.Depth() != 0 || len(op.Paths) != 2 || op.Paths[1] != format.NewPath(1, 0) || op.Accept != -1 || op.Payload != nil {
				t.Fatalf("%+v", op)
			}
		}, ""},
		{"observe with formats", OpObserveComposite, `{"paths":["/3/0/9"],"content_format":110,"accept":112}`, func(t *testing.T, op *Operation) {
			if op.Accept != 112 || op.ContentFormat != 110 || string(op.Payload) != `[{"n":"/3/0/9"}]` {
				t.Fatalf("%+v %s", op, op.Payload)
			}
		}, ""},
		{"write", OpWriteComposite, `{"values":[{"path":"/1/0/1","value":60},{"path":"/3/0/14","value":"+01"}]}`, func(t *testing.T, op *Operation) {
			if len(op.Records) != 2 || op.Records[0].Value != format.IntegerValue(60) || op.Records[1].Value != format.StringValue("+01") {
				t.Fatalf("%+v", op)
			}
		}, ""},
		{"write encoded", OpWriteComposite, `{"values":[{"path":"/1/0/1","value":60}],"content_format":110}`, func(t *testing.T, op *Operation) {
			if string(op.Payload) != `[{"n":"/1/0/1","v":60}]` {
				t.Fatalf("%s", op.Payload)
			}
		}, ""},
		{"no paths", OpReadComposite, `{}`, nil, "1 to 64 paths"},
		{"root", OpReadComposite, `{"paths":["/"]}`, nil, "object, instance or resource"},
		{"twice", OpObserveComposite, `{"paths":["/3/0","/3/0"]}`, nil, "given twice"},
		{"bad path", OpReadComposite, `{"paths":["/3/x"]}`, nil, "paths[0]"},
		{"path too", OpReadComposite, `{"paths":["/3/0"],"path":"/3"}`, nil, "paths (or values)"},
		{"values to read", OpReadComposite, `{"paths":["/3/0"],"values":[{"path":"/3/0/1","value":1}]}`, nil, "not values"},
		{"TLV", OpReadComposite, `{"paths":["/3/0"],"content_format":11542}`, nil, "SenML"},
		{"accept TLV", OpReadComposite, `{"paths":["/3/0"],"accept":11542}`, nil, "SenML"},
		{"accept on write", OpWriteComposite, `{"values":[{"path":"/1/0/1","value":1}],"accept":110}`, nil, "accept"},
		{"write no values", OpWriteComposite, `{}`, nil, "1 to 64 values"},
		{"write paths", OpWriteComposite, `{"paths":["/1/0/1"]}`, nil, "not paths"},
		{"write instance", OpWriteComposite, `{"values":[{"path":"/1/0","value":1}]}`, nil, "not a resource"},
		{"write no value", OpWriteComposite, `{"values":[{"path":"/1/0/1"}]}`, nil, "value is required"},
		{"write twice", OpWriteComposite, `{"values":[{"path":"/1/0/1","value":1},{"path":"/1/0/1","value":2}]}`, nil, "given twice"},
		{"write bad kind", OpWriteComposite, `{"values":[{"path":"/1/0/1","value":"x"}]}`, nil, "values[0]"},
		{"paths on READ", OpRead, `{"path":"/3/0","paths":["/3/0"]}`, nil, "composite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, err := commandOperation(ServiceLwM2M, tc.command, []byte(tc.paras))
			if tc.err != "" {
				var ve *registry.ValidationError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want a paras error with %q", err, tc.err)
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

func TestLwM2MCompositeFormats(t *testing.T) {
	read := &Operation{Name: OpReadComposite, Paths: []format.Path{format.NewPath(3, 0)}, Accept: -1}
	for _, tc := range []struct {
		version, declared string
		ct                uint16
		err               string
	}{
		{"1.1", "", format.FormatSenMLCBOR, ""},
		{"1.1", "110", format.FormatSenMLJSON, ""},
		{"1.1", "110 112", format.FormatSenMLCBOR, ""},
		{"1.2", "11542 110", format.FormatSenMLJSON, ""},
		{"1.1", "11542", 0, `declared ct="11542"`},
		{"1.0", "110", format.FormatSenMLJSON, ""},
		{"", "", 0, "LwM2M 1.0"},
		{"1.0.2", "11542", 0, "LwM2M 1.0.2"},
	} {
		r := &Registration{Version: tc.version}
		if tc.declared != "" {
			r.Formats, _ = format.ParseContentFormats(tc.declared)
		}
		ct, accept, err := read.compositeFormats(r)
		switch {
		case tc.err != "":
			if !errors.Is(err, errNoComposite) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %q: err %v, want %q", tc.version, tc.declared, err, tc.err)
			}
		case err != nil || ct != tc.ct || accept != tc.ct:
			t.Errorf("%s %q: %d %d %v, want %d", tc.version, tc.declared, ct, accept, err, tc.ct)
		}
	}
	// An application's choice stands.
	op, err := commandOperation(ServiceLwM2M, OpReadComposite, []byte(`{"paths":["/3/0"],"content_format":110,"accept":112}`))
	if err != nil {
		t.Fatal(err)
	}
	if ct, accept, err := op.compositeFormats(&Registration{Version: "1.1", Formats: format.SetOf(format.FormatSenMLCBOR)}); err != nil || ct != 110 || accept != 112 {
		t.Fatalf("%d %d %v", ct, accept, err)
	}
}

func TestLwM2MSendTime(t *testing.T) {
	now := mustTime(t, "2026-06-01T00:00:00Z")
	for _, tc := range []struct {
		t    float64
		want string
		err  bool
	}{
		{-60, "2026-05-31T23:59:00Z", false},
		{1.5, "2026-06-01T00:00:01.5Z", false},
		{1780000000, "2026-05-28T20:26:40Z", false},
		{1e300, "", true},
		{-1e10, "", true},
	} {
		got, err := senmlTime(tc.t, now)
		if tc.err {
			if err == nil {
				t.Errorf("%v: %v, want an error", tc.t, got)
			}
			continue
		}
		if err != nil || !got.Equal(mustTime(t, tc.want)) {
			t.Errorf("%v: %v %v, want %s", tc.t, got, err, tc.want)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
