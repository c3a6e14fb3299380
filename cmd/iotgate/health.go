package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// defaultHealthURL is what `iotgate health` asks without -url: the
// default api.listen (":8080") seen from the same host or container.
const defaultHealthURL = "http://127.0.0.1:8080/healthz"

// health asks a running server's /healthz at url and reports whether it
// answered 200 within timeout: the container image's HEALTHCHECK (the
// image has no curl). Any other answer, or none, is an error naming it.
func health(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	// No keep-alive: one request, then the process exits.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	// The body names what is down ({"status":"unavailable","store":...});
	// it is small and bounded by the server, but cap it anyway.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s: %s", url, resp.Status, body)
	}
	return nil
}
