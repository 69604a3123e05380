package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWaitForBundleReturnsWhenTheFileAppears(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tapbeat-agent", "bundle.json")
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- waitForBundle(context.Background(), path, 10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	select {
	case err := <-done:
		t.Fatalf("returned before the bundle existed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitForBundle: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10 s after the bundle appeared")
	}
	if !strings.Contains(logs.String(), "waiting for the enrollment bundle") || !strings.Contains(logs.String(), path) {
		t.Fatalf("the log does not say what it waits for:\n%s", logs.String())
	}
}

func TestWaitForBundleStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := waitForBundle(ctx, filepath.Join(t.TempDir(), "bundle.json"), time.Hour, slog.New(slog.DiscardHandler))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestChecksInTakesExecutableFilesOnly(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"20-disk": 0o755, "10-av's": 0o700, "README": 0o644, ".hidden": 0o755} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := checksIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"'" + dir + `/10-av'\''s'`, "'" + dir + "/20-disk'"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("checks = %q, want %q", got, want)
	}
	none, err := checksIn(filepath.Join(dir, "absent"))
	if err != nil || none != nil {
		t.Fatalf("missing directory: %q, %v; want no checks and no error", none, err)
	}
}
