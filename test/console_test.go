package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// requireChromium finds Debian's chromium (or another Chrome) for the
// console's browser test: skipped without one, except in CI.
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium binary; CI must install Debian package chromium (listed in .ci/packages)")
	}
	t.Skip("no chromium binary (apt-get install chromium); skipping the web console's browser test")
	return ""
}

// browser starts a headless chromium for the test and collects what
// the page reports as broken: uncaught exceptions, console errors and
// logged errors other than failed requests (a CSP violation is one).
func browser(t *testing.T, timeout time.Duration) (context.Context, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(requireChromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests may run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		var p string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			p = "exception: " + e.ExceptionDetails.Error()
		case *log.EventEntryAdded:
			// A refused REST call (the wrong token below) is a network
			// error the page handles; anything else is a fault.
			if e.Entry.Level == log.LevelError && e.Entry.Source != log.SourceNetwork {
				p = fmt.Sprintf("log: %s %s", e.Entry.Text, e.Entry.URL)
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				p = "console.error"
			}
		}
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			// The console asks before destructive actions: say yes.
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(true)) }()
		}
		if p != "" {
			mu.Lock()
			problems = append(problems, p)
			mu.Unlock()
		}
	})
	if err := chromedp.Run(ctx, log.Enable()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), problems...) }
}

// screenshot saves the page into $CONSOLE_SCREENSHOTS/console-NAME.png
// when that variable names a directory (docs/ for the README's images).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runStep runs chromedp actions within timeout; on failure the test
// stops with the step's name and the page's text.
func runStep(t *testing.T, ctx context.Context, step string, timeout time.Duration, actions ...chromedp.Action) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Run(sctx, actions...); err != nil {
		var page string
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = chromedp.Run(tctx, chromedp.Text("main", &page, chromedp.ByQuery))
		t.Fatalf("%s: %v; the page shows:\n%s", step, err, page)
	}
}

// The console in a real browser: its answers carry the strict CSP; a
// wrong token is refused; the operator signs in with the project's
// token and pages through the list; makes an LwM2M product and device
// and gets its CoAP details; creates an MQTT device through the form
// and reads the secret shown once; mosquitto connects with that secret
// (Huawei's wire format, as the page describes it) and the filtered
// list, left alone, turns the device ONLINE; the device page shows the
// reported property and the uplink message (markup, shown as text),
// refuses a command to the
// device once it has left, freezes, unfreezes, resets the secret and
// deletes. The page reports no exception or CSP violation throughout.
func TestConsoleBrowser(t *testing.T) {
	pub := requireTool(t, "mosquitto_pub")
	g := StartGate(t, GateOptions{})
	g.CreateProduct("webmeter", "MQTT")

	resp, err := http.Get(g.API + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("console CSP %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("X-Content-Type-Options %q", resp.Header.Get("X-Content-Type-Options"))
	}

	ctx, problems := browser(t, 3*time.Minute)
	step := func(name string, timeout time.Duration, actions ...chromedp.Action) {
		t.Helper()
		runStep(t, ctx, name, timeout, actions...)
	}

	// A wrong token is refused on the sign-in page.
	step("sign in with a wrong token", 30*time.Second,
		chromedp.Navigate(g.API+"/console/"),
		chromedp.WaitVisible("#project", chromedp.ByID),
		chromedp.SendKeys("#project", g.Project, chromedp.ByID),
		chromedp.SendKeys("#token", "not-the-token", chromedp.ByID),
		chromedp.Click("#signin button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#signin-result .error", chromedp.ByQuery))
	screenshot(t, ctx, "signin")
	// 21 devices of another product: two pages of the list (20 a page).
	g.CreateProduct("bulk", "MQTT")
	for i := range 21 {
		g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprintf("bulk-%02d", i), "product_id": "bulk"})
	}
	rows := `document.querySelectorAll('#devices tbody tr').length`
	step("sign in, page through the list", 30*time.Second,
		chromedp.SetValue("#token", g.Token, chromedp.ByID),
		chromedp.Click("#signin button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#devices table", chromedp.ByQuery),
		chromedp.Poll(rows+` === 20 && document.querySelector('#page-info').textContent.includes('21 in all')`, nil),
		chromedp.Click("#next", chromedp.ByID),
		chromedp.Poll(rows+` === 1 && document.querySelector('#page-info').textContent.startsWith('Page 2')`, nil),
		chromedp.Poll(`document.querySelector('#next').disabled && !document.querySelector('#prev').disabled`, nil),
		chromedp.Click("#prev", chromedp.ByID),
		chromedp.Poll(rows+` === 20 && document.querySelector('#page-info').textContent.startsWith('Page 1')`, nil))

	var secret, deviceID, mqttDetails string
	step("create a device", 30*time.Second,
		chromedp.Click(`#nav a[href="#/devices/new"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#new-node", chromedp.ByID),
		chromedp.Poll(`document.querySelectorAll('#new-product option[value="webmeter"]').length === 1`, nil),
		chromedp.SetValue("#new-product", "webmeter", chromedp.ByID),
		chromedp.SendKeys("#new-node", "web-0001", chromedp.ByID),
		chromedp.Click("#new-device button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#secret", chromedp.ByID),
		chromedp.Text("#secret", &secret, chromedp.ByID),
		chromedp.Text("#created-id", &deviceID, chromedp.ByID),
		chromedp.Text("#connect-mqtt", &mqttDetails, chromedp.ByID))
	screenshot(t, ctx, "new-device")
	if deviceID != "webmeter_web-0001" || len(secret) != 32 {
		t.Fatalf("the page shows device %q, secret %q", deviceID, secret)
	}
	for _, want := range []string{"Client id: webmeter_web-0001_0_0_", "Username:  webmeter_web-0001", "HMAC-SHA256", ":" + g.MQTTS[strings.LastIndex(g.MQTTS, ":")+1:]} {
		if !strings.Contains(mqttDetails, want) {
			t.Errorf("connection details lack %q:\n%s", want, mqttDetails)
		}
	}

	// An LwM2M product made on the products page, and a NoSec device of
	// it: the page gives the endpoint name and both CoAP URIs.
	var lwm2mDetails string
	step("create an LwM2M product and device", 30*time.Second,
		chromedp.Click(`#nav a[href="#/products"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#p-id", chromedp.ByID),
		chromedp.SendKeys("#p-id", "nbweb", chromedp.ByID),
		chromedp.SendKeys("#p-name", "NB meter", chromedp.ByID),
		chromedp.SetValue("#p-proto", "CoAP", chromedp.ByID),
		chromedp.SetValue("#p-format", "binary", chromedp.ByID),
		chromedp.Click("#new-product button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(`[...document.querySelectorAll('#products td')].some((td) => td.textContent === 'nbweb')`, nil),
		chromedp.Click(`#nav a[href="#/devices/new"]`, chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll('#new-product option[value="nbweb"]').length === 1`, nil),
		chromedp.SetValue("#new-product", "nbweb", chromedp.ByID),
		chromedp.SendKeys("#new-node", "nb-web-1", chromedp.ByID),
		chromedp.Click("#new-secure", chromedp.ByID),
		chromedp.Click("#new-device button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#connect-lwm2m", chromedp.ByID),
		chromedp.Text("#connect-lwm2m", &lwm2mDetails, chromedp.ByID))
	_, coapPort, _ := net.SplitHostPort(g.CoAP)
	_, dtlsPort, _ := net.SplitHostPort(g.DTLS)
	for _, want := range []string{"Endpoint name: nb-web-1", "coaps://127.0.0.1:" + dtlsPort + "/rd?ep=nb-web-1", "coap://127.0.0.1:" + coapPort + "/rd?ep=nb-web-1", "PSK identity: nb-web-1"} {
		if !strings.Contains(lwm2mDetails, want) {
			t.Errorf("LwM2M details lack %q:\n%s", want, lwm2mDetails)
		}
	}
	if st, d := g.Do("GET", g.P("/devices/nbweb_nb-web-1"), nil); st != http.StatusOK || d["auth_info"].(map[string]any)["secure_access"] != false {
		t.Errorf("the console's LwM2M device: %d %v", st, d)
	}

	// The list, filtered to the product, shows the device INACTIVE; once
	// it connects, the list turns it ONLINE by itself (it polls).
	status := func(want string) string {
		return fmt.Sprintf(`(document.querySelector('tr[data-device=%q] [data-status]') || {dataset: {}}).dataset.status === %q`, deviceID, want)
	}
	step("the list, filtered, shows the device INACTIVE", 30*time.Second,
		chromedp.Click(`#nav a[href="#/devices"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#devices table", chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll('#filter-product option[value="webmeter"]').length === 1`, nil),
		chromedp.SetValue("#filter-product", "webmeter", chromedp.ByID),
		chromedp.Evaluate(`document.querySelector('#filter-product').dispatchEvent(new Event('change'))`, nil),
		chromedp.Poll(rows+` === 1 && `+status("INACTIVE"), nil))

	// The device connects over MQTTS with the secret the page showed,
	// sends a message, then connects again to report a property and stays
	// connected (-l: one message a line of stdin, until EOF).
	d := &mqttDevice{id: deviceID, secret: secret, g: g}
	mustRun(t, "mosquitto_pub", append(d.args(true), "-q", "1", "-t", "$oc/devices/"+deviceID+"/sys/messages/up", "-m", `<img id="injected" src="x">hello console`)...)
	cmd := exec.Command(pub, append(d.args(true), "-l", "-q", "1", "-t", "$oc/devices/"+deviceID+"/sys/properties/report")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stopOnce sync.Once
	stopPub := func() {
		stopOnce.Do(func() {
			stdin.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("mosquitto_pub: %s", out.String())
			}
		})
	}
	defer stopPub()
	if _, err := io.WriteString(stdin, `{"services":[{"service_id":"Basic","properties":{"kwh":42.5}}]}`+"\n"); err != nil {
		t.Fatal(err)
	}

	step("the list turns the device ONLINE", 30*time.Second,
		chromedp.Poll(status("ONLINE"), nil, chromedp.WithPollingInterval(200*time.Millisecond)))
	screenshot(t, ctx, "devices")

	var shadow string
	step("the device page", 30*time.Second,
		chromedp.Click(fmt.Sprintf(`tr[data-device=%q] a`, deviceID), chromedp.ByQuery),
		chromedp.Poll(`(document.querySelector('#details [data-status]') || {dataset: {}}).dataset.status === 'ONLINE'`, nil),
		chromedp.Poll(`document.querySelector('#shadow pre') !== null && document.querySelector('#shadow pre').textContent.includes('42.5')`, nil),
		// The payload is markup: it shows as text, no element made of it.
		chromedp.Poll(`document.querySelector('#messages table') !== null && document.querySelector('#messages table').textContent.includes('<img id="injected" src="x">hello console')`, nil),
		chromedp.Poll(`document.getElementById('injected') === null`, nil),
		chromedp.Text("#shadow", &shadow, chromedp.ByID))
	screenshot(t, ctx, "device")
	if !strings.Contains(shadow, `"kwh": 42.5`) {
		t.Errorf("device page shadow: %s", shadow)
	}

	// The device leaves; a command to it is refused and the page says
	// why; freeze and unfreeze; a new secret, shown once; deletion.
	stopPub()
	var newSecret string
	step("the device page's actions", 60*time.Second,
		chromedp.Poll(`document.querySelector('#details [data-status]').dataset.status === 'OFFLINE'`, nil),
		chromedp.SendKeys("#cmd-service", "Basic", chromedp.ByID),
		chromedp.SendKeys("#cmd-name", "reset", chromedp.ByID),
		chromedp.SetValue("#cmd-paras", `{"kwh": 0}`, chromedp.ByID),
		chromedp.Click("#command button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(`(document.querySelector('#cmd-result .error') || {textContent: ''}).textContent.includes('IOTDA.014016')`, nil),
		chromedp.Click("#freeze", chromedp.ByID),
		chromedp.Poll(`document.querySelector('#details [data-status]').dataset.status === 'FROZEN' && document.querySelector('#freeze').textContent === 'Unfreeze'`, nil),
		chromedp.Click("#freeze", chromedp.ByID),
		chromedp.Poll(`document.querySelector('#details [data-status]').dataset.status !== 'FROZEN' && document.querySelector('#freeze').textContent === 'Freeze'`, nil),
		chromedp.Click("#reset-secret", chromedp.ByID), // confirm() is accepted below
		chromedp.WaitVisible("#new-secret", chromedp.ByID),
		chromedp.Text("#new-secret", &newSecret, chromedp.ByID))
	if len(newSecret) != 32 || newSecret == secret {
		t.Errorf("reset secret shows %q (was %q)", newSecret, secret)
	}
	step("delete the device", 30*time.Second,
		chromedp.Click("#delete", chromedp.ByID),
		chromedp.Poll(`location.hash === '#/devices'`, nil))
	if st, _ := g.Do("GET", g.P("/devices/"+deviceID), nil); st != http.StatusNotFound {
		t.Errorf("after the console's delete, GET the device: %d, want 404", st)
	}

	if p := problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}
