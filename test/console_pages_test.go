package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// selfSignedCA is a CA certificate (PEM) and its key, made for the test.
func selfSignedCA(t *testing.T, cn string) (string, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), cert, key
}

// signedBy is a leaf certificate (PEM) with common name cn that ca signed.
func signedBy(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// The console's CA certificate and routing rule pages in a real
// browser: a CA uploaded on the page is listed unverified with its
// verify code; a certificate signed with the CN the page shows verifies
// it; a rule for uplinks with an HTTP action made on the pages forwards
// a mosquitto_pub uplink to a receiver; a Kafka action's brokers reach
// the API as addresses; neither the HTTP signing token nor the Kafka
// password ever shows; an action is deleted and the rule deactivated and
// activated on its page; the rule deleted on its page is gone from the API. The page
// reports no exception or CSP violation throughout.
func TestConsoleBrowserCertsAndRouting(t *testing.T) {
	requireTool(t, "mosquitto_pub")
	g := StartGate(t, GateOptions{Extra: "forwarding:\n  poll: 10ms\n  reload: 100ms\n"})
	dev := createMQTTDevice(t, g, "webfwd", "fwd-0001", true)
	recv := newReceiver(t, false)

	ctx, problems := browser(t, 3*time.Minute)
	step := func(name string, timeout time.Duration, actions ...chromedp.Action) {
		t.Helper()
		runStep(t, ctx, name, timeout, actions...)
	}
	step("sign in", 30*time.Second,
		chromedp.Navigate(g.API+"/console/"),
		chromedp.WaitVisible("#project", chromedp.ByID),
		chromedp.SendKeys("#project", g.Project, chromedp.ByID),
		chromedp.SendKeys("#token", g.Token, chromedp.ByID),
		chromedp.Click("#signin button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#devices", chromedp.ByID))

	// Upload: listed, unverified, with the verify code the API holds.
	caPEM, ca, caKey := selfSignedCA(t, "Console Test CA")
	var certID, code string
	step("upload a CA certificate", 30*time.Second,
		chromedp.Click(`#nav a[href="#/certificates"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#cert-content", chromedp.ByID),
		chromedp.SetValue("#cert-content", caPEM, chromedp.ByID),
		chromedp.Click("#upload-cert button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll('#certs tr[data-cert]').length === 1`, nil),
		chromedp.Poll(`document.querySelector('#certs tr[data-cert] [data-verified]').dataset.verified === 'false'`, nil),
		chromedp.Evaluate(`document.querySelector('#certs tr[data-cert]').dataset.cert`, &certID),
		chromedp.Text("#certs .verify-code", &code, chromedp.ByQuery))
	st, listed := g.Do("GET", g.P("/certificates"), nil)
	certs, _ := listed["certificates"].([]any)
	if st != http.StatusOK || len(certs) != 1 {
		t.Fatalf("certificates after the upload: %d %v", st, listed)
	}
	c := certs[0].(map[string]any)
	if c["certificate_id"] != certID || c["verify_code"] != code || code == "" || c["cn_name"] != "Console Test CA" {
		t.Fatalf("the page lists %q with code %q; the API has %v", certID, code, c)
	}

	// Proof of possession: a certificate the CA signed, CN the code.
	step("open the verify form", 30*time.Second,
		chromedp.Click("#certs .verify-open", chromedp.ByQuery),
		chromedp.WaitVisible(".verify-content", chromedp.ByQuery),
		chromedp.Poll(fmt.Sprintf(`document.querySelector('form.verify pre').textContent.includes('/CN=%s')`, code), nil))
	screenshot(t, ctx, "certificates")
	step("verify the CA certificate", 30*time.Second,
		chromedp.SetValue(".verify-content", signedBy(t, "not-the-code", ca, caKey), chromedp.ByQuery),
		chromedp.Click("form.verify button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("form.verify .error", chromedp.ByQuery),
		chromedp.SetValue(".verify-content", signedBy(t, code, ca, caKey), chromedp.ByQuery),
		chromedp.Click("form.verify button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(`document.querySelector('#certs tr[data-cert] [data-verified]').dataset.verified === 'true' && document.querySelector('form.verify') === null`, nil))
	if _, c := g.Do("GET", g.P("/certificates/"+certID), nil); c["status"] != true {
		t.Errorf("after the console's verify: %v", c)
	}

	// A rule for uplinks and a signed HTTP action to the receiver.
	const token = "consoleSignToken42"
	var ruleHash, actionsText, pageText string
	step("create a routing rule and an HTTP action", 30*time.Second,
		chromedp.Click(`#nav a[href="#/rules"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#r-name", chromedp.ByID),
		chromedp.SendKeys("#r-name", "uplinks", chromedp.ByID),
		chromedp.SetValue("#r-subject", "device.message report", chromedp.ByID),
		chromedp.Click("#new-rule button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#a-url", chromedp.ByID),
		chromedp.Poll(`(document.querySelector('#rule-details [data-active]') || {dataset: {}}).dataset.active === 'true'`, nil),
		chromedp.Evaluate(`location.hash`, &ruleHash),
		chromedp.SendKeys("#a-url", recv.url(), chromedp.ByID),
		chromedp.Click("#a-sign", chromedp.ByID),
		chromedp.SendKeys("#a-token", token, chromedp.ByID),
		chromedp.Click("#new-action button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll('#actions tr[data-action]').length === 1`, nil),
		chromedp.Text("#actions", &actionsText, chromedp.ByID),
		chromedp.Evaluate(`document.querySelector('main').textContent + [...document.querySelectorAll('input')].map((i) => i.value).join(' ')`, &pageText))
	screenshot(t, ctx, "rule")
	ruleID := strings.TrimPrefix(ruleHash, "#/rule/")
	if !strings.Contains(actionsText, recv.url()) || !strings.Contains(actionsText, "(signed)") || !strings.Contains(actionsText, "HTTP_FORWARDING") {
		t.Errorf("the rule's actions show:\n%s", actionsText)
	}
	if strings.Contains(pageText, token) {
		t.Error("the page shows the action's signing token after it was sent")
	}
	if st, r := g.Do("GET", g.P("/routing-rule/rules/"+ruleID), nil); st != http.StatusOK || r["where"] != "" ||
		r["subject"].(map[string]any)["resource"] != "device.message" || r["subject"].(map[string]any)["event"] != "report" {
		t.Fatalf("the console's rule %q: %d %v", ruleID, st, r)
	}

	// A Kafka action from the form: brokers parsed into IoTDA's
	// addresses, the SASL password stored but never shown; then deleted
	// from the rule's page.
	const kafkaPassword = "kafkaPass99"
	step("add and delete a Kafka action", 30*time.Second,
		chromedp.SetValue("#a-channel", "DMS_KAFKA_FORWARDING", chromedp.ByID),
		chromedp.Evaluate(`document.querySelector('#a-channel').dispatchEvent(new Event('change'))`, nil),
		chromedp.WaitVisible("#a-brokers", chromedp.ByID),
		chromedp.SendKeys("#a-brokers", "127.0.0.1:9092, kafka.example:9093", chromedp.ByID),
		chromedp.SendKeys("#a-topic", "iot.up", chromedp.ByID),
		chromedp.SetValue("#a-mechanism", "PLAIN", chromedp.ByID),
		chromedp.SendKeys("#a-user", "gate", chromedp.ByID),
		chromedp.SendKeys("#a-password", kafkaPassword, chromedp.ByID),
		chromedp.Click("#new-action button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll('#actions tr[data-action]').length === 2`, nil),
		chromedp.Text("#actions", &actionsText, chromedp.ByID),
		chromedp.Evaluate(`document.querySelector('main').textContent + [...document.querySelectorAll('input')].map((i) => i.value).join(' ')`, &pageText))
	if !strings.Contains(actionsText, "127.0.0.1:9092,kafka.example:9093 topic iot.up (user gate)") {
		t.Errorf("the rule's actions show:\n%s", actionsText)
	}
	if strings.Contains(pageText, kafkaPassword) {
		t.Error("the page shows the Kafka password after it was sent")
	}
	_, acts := g.Do("GET", g.P("/routing-rule/actions?channel=DMS_KAFKA_FORWARDING&rule_id="+ruleID), nil)
	list, _ := acts["actions"].([]any)
	if len(list) != 1 {
		t.Fatalf("the rule's Kafka actions: %v", acts)
	}
	kafka := list[0].(map[string]any)
	if got := fmt.Sprint(kafka["channel_detail"].(map[string]any)["dms_kafka_forwarding"].(map[string]any)["addresses"]); got != "[map[ip:127.0.0.1 port:9092] map[domain:kafka.example port:9093]]" {
		t.Errorf("the Kafka action's addresses: %s", got)
	}
	step("delete the Kafka action", 30*time.Second,
		chromedp.Click(fmt.Sprintf(`tr[data-action=%q] .action-delete`, kafka["action_id"]), chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll('#actions tr[data-action]').length === 1`, nil))
	if st, _ := g.Do("GET", g.P("/routing-rule/actions/"+kafka["action_id"].(string)), nil); st != http.StatusNotFound {
		t.Errorf("after the console's delete, GET the Kafka action: %d, want 404", st)
	}

	// Deactivated, then active again, from the rule's page.
	step("deactivate the rule", 30*time.Second,
		chromedp.Click("#rule-toggle", chromedp.ByID),
		chromedp.Poll(`document.querySelector('#rule-details [data-active]').dataset.active === 'false' && document.querySelector('#rule-toggle').textContent === 'Activate'`, nil))
	if _, r := g.Do("GET", g.P("/routing-rule/rules/"+ruleID), nil); r["active"] != false {
		t.Errorf("after Deactivate: %v", r)
	}
	step("activate the rule", 30*time.Second,
		chromedp.Click("#rule-toggle", chromedp.ByID),
		chromedp.Poll(`document.querySelector('#rule-details [data-active]').dataset.active === 'true' && document.querySelector('#rule-toggle').textContent === 'Deactivate'`, nil))

	// An uplink reaches the receiver.
	mustRun(t, "mosquitto_pub", append(dev.args(true), "-q", "1", "-t", "$oc/devices/"+dev.id+"/sys/messages/up", "-m", `{"temp":21}`)...)
	recv.waitFor("the uplink", 15*time.Second, g, func(p []push) bool {
		for _, x := range p {
			if x.env.Resource == "device.message" && x.env.Event == "report" && x.env.NotifyData.Header.DeviceID == dev.id {
				return true
			}
		}
		return false
	})

	step("delete the rule", 30*time.Second,
		chromedp.Click("#rule-delete", chromedp.ByID), // confirm() is accepted
		chromedp.Poll(`location.hash === '#/rules'`, nil),
		chromedp.WaitVisible("#rules", chromedp.ByID),
		chromedp.Poll(fmt.Sprintf(`document.querySelector('#rules tr[data-rule=%q]') === null && document.querySelector('#rules').textContent !== ''`, ruleID), nil))
	if st, _ := g.Do("GET", g.P("/routing-rule/rules/"+ruleID), nil); st != http.StatusNotFound {
		t.Errorf("after the console's delete, GET the rule: %d, want 404", st)
	}
	if st, a := g.Do("GET", g.P("/routing-rule/actions?rule_id="+ruleID), nil); st != http.StatusOK || a["count"] != float64(0) {
		t.Errorf("the deleted rule's actions: %d %v", st, a)
	}

	step("delete the CA certificate", 30*time.Second,
		chromedp.Click(`#nav a[href="#/certificates"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#certs .cert-delete", chromedp.ByQuery),
		chromedp.Click("#certs .cert-delete", chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll('#certs tr[data-cert]').length === 0 && document.querySelector('#certs').textContent.includes('No CA certificates')`, nil))
	if st, _ := g.Do("GET", g.P("/certificates/"+certID), nil); st != http.StatusNotFound {
		t.Errorf("after the console's delete, GET the certificate: %d, want 404", st)
	}

	if p := problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}
