package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ensureCredentials returns the configured API credentials or, when there
// are none, the ones generated at first start into data_dir. Freshly
// generated ones are printed once to out: that is the only way the
// operator learns them.
func ensureCredentials(cfg *Config, out io.Writer) ([]Credential, error) {
	if len(cfg.API.Credentials) > 0 {
		return cfg.API.Credentials, nil
	}
	path := filepath.Join(cfg.DataDir, "credentials.json")
	b, err := os.ReadFile(path)
	if err == nil {
		var creds []Credential
		if err := json.Unmarshal(b, &creds); err != nil || len(creds) == 0 {
			return nil, fmt.Errorf("%s is corrupt; delete it to generate new credentials", path)
		}
		return creds, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	c := Credential{
		ProjectID: randomHex(16),
		AccessKey: randomAlnum(20),
		SecretKey: randomAlnum(40),
		Token:     randomHex(24),
	}
	b, _ = json.MarshalIndent([]Credential{c}, "", "  ")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write credentials: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write credentials: %w", err)
	}
	fmt.Fprintf(out, "iotgate: generated API credentials (shown once; also in %s):\n"+
		"  project_id: %s\n  access_key: %s\n  secret_key: %s\n  token:      %s\n",
		path, c.ProjectID, c.AccessKey, c.SecretKey, c.Token)
	return []Credential{c}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func randomAlnum(n int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}
