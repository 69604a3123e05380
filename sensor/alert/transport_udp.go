package alert

import (
	"context"
	"fmt"
	"net"
)

// udp: RFC 5426, one message per datagram, best effort.
func init() {
	registerTransport("udp", transport{
		delivery: "sent (udp gives no delivery confirmation)",
		dial: func(ctx context.Context, d *Destination) (*conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, "udp", d.Addr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.Name, err)
			}
			return &conn{c: c, dead: make(chan struct{})}, nil
		},
	})
}
