package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/iotgate/iotgate/cmd/iotgate/devimport"
)

// tokenEnv holds the API token when -token is not given: a flag's value
// is visible to every user of the machine in the process list.
const tokenEnv = "IOTGATE_TOKEN"

const devicesUsage = `usage:
  iotgate devices import -api URL -project ID [-token TOKEN] [options] FILE.csv
      create the devices listed in FILE.csv through the REST API; rerun to resume
`

// devicesCmd runs "iotgate devices SUBCOMMAND": 0 every row done, 1 some
// rows failed (listed in the failures file), 2 an error or an
// interruption (a rerun resumes).
func devicesCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "import" {
		switch {
		case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "help"):
			fmt.Fprint(stdout, devicesUsage)
			return 0
		case len(args) > 0:
			fmt.Fprintf(stderr, "iotgate devices: unknown command %q\n", args[0])
		}
		fmt.Fprint(stderr, devicesUsage)
		return 2
	}
	fs := flag.NewFlagSet("iotgate devices import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := devimport.Options{}
	fs.StringVar(&o.API, "api", "", "the API's base URL, e.g. http://127.0.0.1:8080")
	fs.StringVar(&o.Project, "project", "", "project_id the devices are created in (the token's project)")
	fs.StringVar(&o.Token, "token", "", "API token (X-Auth-Token); default $"+tokenEnv)
	fs.StringVar(&o.Failures, "failures", "", "CSV of the refused rows (default: FILE.failures.csv beside FILE)")
	fs.IntVar(&o.Concurrency, "concurrency", 8, fmt.Sprintf("requests in flight (1 to %d)", devimport.MaxConcurrency))
	fs.Float64Var(&o.Rate, "rate", 0, "rows a second at most (0: no limit)")
	fs.DurationVar(&o.ProgressEvery, "progress-every", 5*time.Second, "interval between progress lines when stderr is not a terminal")
	caFile := fs.String("cacert", "", "PEM CA certificate(s) that sign an https API's certificate (default: the system's)")
	// Flags may come before or after the file.
	var files []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return exitFor(err)
		}
		if fs.NArg() == 0 {
			break
		}
		files, rest = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "iotgate devices import: one CSV file is required (got %d)\n%s", len(files), devicesUsage)
		return 2
	}
	o.File = files[0]
	if o.Token == "" {
		o.Token = os.Getenv(tokenEnv)
	}
	if *caFile != "" {
		hc, err := caClient(*caFile, o.Concurrency)
		if err != nil {
			fmt.Fprintln(stderr, "iotgate devices import:", err)
			return 2
		}
		o.HTTP = hc
	}
	o.Progress = stderr
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			o.Terminal = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := devimport.Run(ctx, o)
	if sum.Rows > 0 || sum.Done > 0 {
		fmt.Fprintf(stdout, "%s: %d rows: %d created, %d already existed, %d failed, in %s\n",
			o.File, sum.Rows, sum.Created, sum.Existed, sum.Failed, sum.Elapsed.Round(time.Millisecond))
	}
	if sum.Failed > 0 {
		fmt.Fprintf(stdout, "failures: %s (%d rows, with the API's error_code and error_msg)\n", sum.Failures, sum.Failed)
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "iotgate devices import:", err)
		return 2
	case sum.Interrupted:
		fmt.Fprintf(stderr, "iotgate devices import: interrupted after %d of %d rows; run the same command again to resume\n", sum.Done, sum.Rows)
		return 2
	case sum.Failed > 0:
		return 1
	}
	return 0
}

// caClient is an HTTP client that trusts the certificates in caFile.
func caClient(caFile string, conns int) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("-cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("-cacert: " + caFile + " holds no PEM certificate")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}
