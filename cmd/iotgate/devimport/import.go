package devimport

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// MaxConcurrency bounds Options.Concurrency: more requests in flight
// only queue behind the server's store.
const MaxConcurrency = 64

// Options say what to import where.
type Options struct {
	API     string // base URL: http(s)://host:port
	Project string
	Token   string // sent as X-Auth-Token; never printed
	File    string // the CSV file
	// Failures is the CSV of refused rows; "" is File's name with
	// .failures.csv for its extension.
	Failures    string
	Concurrency int     // requests in flight, 1..MaxConcurrency
	Rate        float64 // rows a second at most; 0: no limit
	HTTP        *http.Client
	// Progress receives the progress line: rewritten in place with \r
	// when Terminal, else a line every ProgressEvery (0: 5 s).
	Progress      io.Writer
	Terminal      bool
	ProgressEvery time.Duration

	backoff time.Duration // first wait before a retry; 0: 200 ms (tests shorten it)
}

// Summary is what an import did.
type Summary struct {
	Rows     int // records in the file
	Done     int // rows with an outcome (all of them unless Interrupted)
	Created  int
	Existed  int
	Failed   int
	Elapsed  time.Duration
	Failures string // the failures file written
	// Interrupted: the context ended before every row was tried; a rerun
	// resumes.
	Interrupted bool
}

// FailuresPath is where the failures of importing file go by default.
func FailuresPath(file string) string {
	return strings.TrimSuffix(file, filepath.Ext(file)) + ".failures.csv"
}

// result is one row's outcome, or its failure.
type result struct {
	row     Row
	outcome Outcome
	err     error
}

// Run imports o.File. A row is done when the API created its device or
// already holds a device with its node_id in its product, so running
// the same file again resumes an interrupted import and retries only the
// rows that failed. Run returns an error, with the summary so far, when
// the file cannot be read, the API refuses the credential or cannot be
// reached: before any row is sent (a first request checks both), or
// part way, when the import stops and a rerun resumes.
func Run(ctx context.Context, o Options) (Summary, error) {
	start := time.Now()
	var sum Summary
	if err := o.check(); err != nil {
		return sum, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newClient(o)
	n, err := countRows(o.File)
	if err != nil {
		return sum, err
	}
	if err := c.preflight(ctx); err != nil {
		return sum, err
	}
	sum.Rows = n
	in, err := os.Open(o.File)
	if err != nil {
		return sum, err
	}
	defer in.Close()
	rd, err := NewReader(in)
	if err != nil {
		return sum, err
	}
	sum.Failures = o.Failures
	if sum.Failures == "" {
		sum.Failures = FailuresPath(o.File)
	}
	fw, err := newFailureWriter(sum.Failures)
	if err != nil {
		return sum, err
	}
	jobs := make(chan Row)
	results := make(chan result, o.Concurrency)
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the reader: rows to the workers, malformed rows straight to the results
		defer wg.Done()
		defer close(jobs)
		readErr = feed(ctx, rd, o.Rate, jobs, results)
	}()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range jobs {
				out, err := c.create(ctx, r)
				results <- result{row: r, outcome: out, err: err}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	p := &progress{w: o.Progress, terminal: o.Terminal, every: cmp.Or(o.ProgressEvery, 5*time.Second), start: start, last: start}
	var fatal error
	for res := range results {
		if err := sum.add(ctx, res, fw); err != nil && fatal == nil {
			fatal = err
			cancel() // every row would meet the same
		}
		p.update(&sum, false)
	}
	sum.Elapsed = time.Since(start)
	p.update(&sum, true)
	if err := fw.close(); err != nil && fatal == nil {
		fatal = err
	}
	if fatal == nil && readErr != nil {
		fatal = readErr
	}
	sum.Interrupted = sum.Done < sum.Rows
	return sum, fatal
}

// add counts one row's result and records its failure. An error stops
// the import: the credential refused, the API gone, the failures file
// not written.
func (s *Summary) add(ctx context.Context, res result, fw *failureWriter) error {
	switch {
	case errors.Is(res.err, ErrCredential), errors.Is(res.err, ErrUnreachable):
		return res.err // not the row's failure: a rerun tries it
	case res.err != nil && ctx.Err() != nil:
		return nil // cut short by the interruption: not tried, not failed
	case res.err != nil:
		s.Failed++
		s.Done++
		return fw.write(res.row, res.err)
	case res.outcome == Existed:
		s.Existed++
	default:
		s.Created++
	}
	s.Done++
	return nil
}

func (o *Options) check() error {
	switch {
	case o.API == "":
		return errors.New("the API's URL is required")
	case !strings.HasPrefix(o.API, "http://") && !strings.HasPrefix(o.API, "https://"):
		return fmt.Errorf("API URL %q: must start with http:// or https://", o.API)
	case o.Project == "":
		return errors.New("the project is required")
	case o.Token == "":
		return errors.New("the API token is required")
	case o.Concurrency < 1 || o.Concurrency > MaxConcurrency:
		return fmt.Errorf("concurrency %d: must be 1 to %d", o.Concurrency, MaxConcurrency)
	case o.Rate < 0:
		return fmt.Errorf("rate %g: must not be negative", o.Rate)
	}
	if o.Failures != "" {
		a, _ := filepath.Abs(o.Failures)
		b, _ := filepath.Abs(o.File)
		if a == b {
			return errors.New("the failures file cannot be the input file")
		}
	}
	return nil
}

// countRows counts the file's records, for the progress line (a first,
// cheap pass: the rows themselves are read once they are sent).
func countRows(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := NewReader(f)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		_, err := rd.Read()
		var re *RowError
		switch {
		case errors.Is(err, io.EOF):
			return n, nil
		case err == nil, errors.As(err, &re):
			n++
		default:
			return n, err
		}
	}
}

// feed sends each row to jobs, paced to rate rows a second (0: as fast
// as the workers take them), and each malformed row to results as a
// failure. It stops when ctx ends.
func feed(ctx context.Context, rd *Reader, rate float64, jobs chan<- Row, results chan<- result) error {
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	for {
		row, err := rd.Read()
		var re *RowError
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, &re):
			select {
			case results <- result{row: Row{Line: re.Line, NodeID: re.NodeID}, err: re}:
				continue
			case <-ctx.Done():
				return nil
			}
		case err != nil:
			return err
		}
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case jobs <- row:
		case <-ctx.Done():
			return nil
		}
	}
}

// failureWriter writes the failures CSV: one record per refused row with
// the API's error_code and error_msg (error_code empty for a row the
// file itself got wrong, which was never sent).
type failureWriter struct {
	f *os.File
	w *csv.Writer
}

func newFailureWriter(path string) (*failureWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("failures file: %w", err)
	}
	w := csv.NewWriter(f)
	if err := w.Write([]string{"line", "node_id", "product_id", "error_code", "error_msg"}); err != nil {
		f.Close()
		return nil, fmt.Errorf("failures file: %w", err)
	}
	return &failureWriter{f: f, w: w}, nil
}

// write records one failure and flushes it, so an interrupted import
// leaves every failure it saw on disk.
func (fw *failureWriter) write(r Row, err error) error {
	code, msg := "", err.Error()
	var ae *APIError
	var re *RowError
	switch {
	case errors.As(err, &re):
	case errors.As(err, &ae):
		code, msg = ae.Code, ae.Msg
		if code == "" {
			code = fmt.Sprintf("HTTP %d", ae.Status)
		}
	}
	if err := fw.w.Write([]string{fmt.Sprint(r.Line), r.NodeID, r.ProductID, code, msg}); err != nil {
		return fmt.Errorf("failures file: %w", err)
	}
	fw.w.Flush()
	if err := fw.w.Error(); err != nil {
		return fmt.Errorf("failures file: %w", err)
	}
	return nil
}

func (fw *failureWriter) close() error {
	fw.w.Flush()
	err := fw.w.Error()
	if cerr := fw.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("failures file: %w", err)
	}
	return nil
}
