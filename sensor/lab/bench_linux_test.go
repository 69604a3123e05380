package lab_test

import (
	"context"
	"io"
	"os/exec"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// BenchmarkUpDown measures bringing a three-endpoint lab up and down
// against the reference of adding and deleting its five namespaces alone.
func BenchmarkUpDown(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommands(b, "ip", "tc", "ethtool")
	ctx := context.Background()
	b.Run("reference=netns-add-del-x5", func(b *testing.B) {
		for b.Loop() {
			name := testenv.UniqueName("tbb")
			for _, h := range []string{"a", "b", "c", "d", "e"} {
				if out, err := exec.Command("ip", "netns", "add", name+"-"+h).CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
			for _, h := range []string{"a", "b", "c", "d", "e"} {
				if out, err := exec.Command("ip", "netns", "del", name+"-"+h).CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
		}
	})
	b.Run("lab-3-endpoints", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			l, err := lab.Up(ctx, lab.Config{Name: testenv.UniqueName("tbb"), StateDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Down(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTCPThroughput measures one TCP stream from ep1 to ep2 across
// the switch with both ports mirrored against the reference of the same
// stream with the mirror filters removed: the cost of the SPAN copy.
func BenchmarkTCPThroughput(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommands(b, "ip", "tc", "ethtool")
	ctx := context.Background()
	l, err := lab.Up(ctx, lab.Config{Name: testenv.UniqueName("tbb"), StateDir: b.TempDir(), Endpoints: lab.Endpoints(2)})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Down(ctx)
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	stream := func(b *testing.B) {
		dst, _ := l.Addr("ep2")
		ln, err := l.Listen(ctx, "ep2", "tcp", dst.String()+":0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan int64, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- 0
				return
			}
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			done <- n
		}()
		c, err := l.Dial(ctx, "ep1", "tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(chunk)
		for b.Loop() {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		<-done
	}
	b.Run("reference=unmirrored", func(b *testing.B) {
		for _, port := range []string{"ep1p0", "ep2p0"} {
			if _, err := l.Run(ctx, lab.HostSwitch, "tc", "qdisc", "del", "dev", port, "ingress"); err != nil {
				b.Fatal(err)
			}
		}
		defer func() {
			for _, port := range []string{"ep1p0", "ep2p0"} {
				_, _ = l.Run(ctx, lab.HostSwitch, "tc", "qdisc", "add", "dev", port, "ingress")
				_, _ = l.Run(ctx, lab.HostSwitch, "tc", "filter", "add", "dev", port, "parent", "ffff:", "protocol", "all",
					"u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", lab.SpanPort)
			}
		}()
		stream(b)
	})
	b.Run("mirrored", stream)
}
