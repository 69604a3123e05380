package alert

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// memoryCollectors hands the collector end of each memory:// connection to
// the test that dials it.
var memoryCollectors = make(chan net.Conn, 1)

// memory:// is a transport that exists only in tests: a stream to an
// in-process collector. It is added as any transport is, by one file and
// its registration.
func init() {
	registerTransport("memory", transport{
		delivery: "sent, connection still open after the confirm delay",
		dial: func(ctx context.Context, d *Destination) (*conn, error) {
			client, collector := net.Pipe()
			memoryCollectors <- collector
			return watch(client), nil
		},
	})
}

func TestRegisteredTransportCarriesAlerts(t *testing.T) {
	d, err := ParseDestination("memory://collector:1?format=json&confirm=50ms")
	if err != nil {
		t.Fatal(err)
	}
	if DeliveryRule("memory") == "" || !strings.Contains(strings.Join(Schemes(), ","), "memory") {
		t.Fatalf("memory transport not in the registry: %v", Schemes())
	}
	if _, err := ParseDestination("memory://collector:1?ca=/x"); err == nil {
		t.Fatal("TLS options accepted by a transport that is not TLS")
	}
	ev := testEvents(1, 1)[0]
	got := make(chan string, 1)
	go func() {
		c := <-memoryCollectors
		defer c.Close()
		r := bufio.NewReader(c)
		msg, err := readOctetCounted(r)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(msg)
		time.Sleep(200 * time.Millisecond) // stay open past the confirm delay
	}()
	if err := Send(context.Background(), d, []schema.Event{ev}, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-got:
		if !strings.Contains(msg, `"seq":1`) || !strings.Contains(msg, string(ev.Type)) {
			t.Fatalf("collector received %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the collector")
	}
}

// readOctetCounted reads one RFC 6587 octet-counted frame: "LEN MSG".
func readOctetCounted(r *bufio.Reader) ([]byte, error) {
	n, err := r.ReadString(' ')
	if err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
	if err != nil {
		return nil, err
	}
	msg := make([]byte, size)
	_, err = io.ReadFull(r, msg)
	return msg, err
}
