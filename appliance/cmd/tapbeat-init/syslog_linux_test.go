package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestSyslogSink(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSyslogSink(ctx, "udp", pc.LocalAddr().String())
	if _, err := s.Write([]byte("time=x level=INFO msg=\"tapbeat run started\"\nsecond line\n")); err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 2048)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < 2 {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
	if !strings.Contains(got[0], "tapbeat") || !strings.Contains(got[0], `msg="tapbeat run started"`) || !strings.Contains(got[1], "second line") {
		t.Errorf("syslog messages %q", got)
	}
	// <30> is facility daemon (3), severity info (6).
	if !strings.HasPrefix(got[0], "<30>") {
		t.Errorf("priority: %q", got[0])
	}
}
