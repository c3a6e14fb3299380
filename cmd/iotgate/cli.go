package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

const usage = `usage:
  iotgate [serve] [-config FILE]   run the platform (no -config: the built-in defaults)
  iotgate check [-config FILE]     check, changing nothing, what a start would: the configuration,
                                   that every listen address is free, that the certificate files and
                                   the master key load, and (the platform stopped) that the store's
                                   records, indexes and counters agree; exits 1 on any problem
  iotgate version                  print the version, the commit and the Go version
  iotgate health [-url URL] [-timeout D]
                                   exit 0 if a running server's /healthz (default
                                   http://127.0.0.1:8080/healthz) answers 200 within the timeout (3s),
                                   else 1: the container image's health check
  iotgate backup [-config FILE] -o BACKUP
                                   write a consistent backup of the store (Badger): through the running
                                   server, or from the stopped server's store
  iotgate restore [-config FILE] -i BACKUP
                                   load a backup into the configuration's data directory, which must
                                   hold no store yet
  iotgate devices import -api URL -project ID [-token T] FILE.csv
                                   create the devices listed in FILE.csv through the REST API (see
                                   iotgate devices import -h); rerun to resume

`

// cli runs the command line args and returns the process's exit status:
// 0 done, 1 check found problems, 2 an error (one line on stderr).
func cli(args []string, stdout, stderr io.Writer) int {
	// -config may come before the command (iotgate -config F check) or
	// after it (iotgate check -config F).
	global := flag.NewFlagSet("iotgate", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := global.String("config", "", "YAML configuration file")
	if err := global.Parse(args); err != nil {
		return exitFor(err)
	}
	cmd, rest := "serve", global.Args()
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd == "devices" { // a client of the API: no -config
		return devicesCmd(rest, stdout, stderr)
	}
	sub := flag.NewFlagSet("iotgate "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	sub.Usage = global.Usage
	if cmd != "version" && cmd != "health" {
		sub.StringVar(configPath, "config", *configPath, "YAML configuration file")
	}
	var backupOut, restoreIn, healthURL string
	var healthTimeout time.Duration
	switch cmd {
	case "health":
		sub.StringVar(&healthURL, "url", defaultHealthURL, "the server's /healthz URL")
		sub.DurationVar(&healthTimeout, "timeout", 3*time.Second, "how long to wait for the answer")
	case "backup":
		sub.StringVar(&backupOut, "o", "", "backup file to write")
	case "restore":
		sub.StringVar(&restoreIn, "i", "", "backup file to read")
	}
	if err := sub.Parse(rest); err != nil {
		return exitFor(err)
	}
	if sub.NArg() > 0 {
		fmt.Fprintf(stderr, "iotgate %s: unexpected argument %q\n", cmd, sub.Arg(0))
		return 2
	}
	var err error
	switch cmd {
	case "serve":
		err = run(*configPath)
	case "check":
		var ok bool
		if ok, err = check(*configPath, stdout); err == nil && !ok {
			return 1
		}
	case "backup":
		err = backupCmd(*configPath, backupOut, stdout)
	case "restore":
		err = restoreCmd(*configPath, restoreIn, stdout)
	case "version":
		fmt.Fprintln(stdout, versionLine(readBuildInfo()))
	case "health":
		if err := health(context.Background(), healthURL, healthTimeout); err != nil {
			fmt.Fprintln(stderr, "iotgate:", err)
			return 1
		}
	default:
		fmt.Fprintf(stderr, "iotgate: unknown command %q (commands: serve, check, version, health, backup, restore, devices)\n", cmd)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "iotgate:", err)
		return 2
	}
	return 0
}

// exitFor is the status of a flag parse error: 0 for -h.
func exitFor(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
