package alert

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// tcp (RFC 6587 octet counting) and tls (RFC 5425): delivered once the
// connection outlived the confirm delay after the write.
func init() {
	const rule = "sent, connection still open after the confirm delay"
	registerTransport("tcp", transport{
		delivery: rule,
		dial: func(ctx context.Context, d *Destination) (*conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, "tcp", d.Addr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w (is the collector listening?)", d.Name, err)
			}
			return watch(c), nil
		},
	})
	registerTransport("tls", transport{
		delivery: rule,
		tls:      true,
		dial: func(ctx context.Context, d *Destination) (*conn, error) {
			var nd net.Dialer
			raw, err := nd.DialContext(ctx, "tcp", d.Addr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w (is the collector listening?)", d.Name, err)
			}
			tc := tls.Client(raw, d.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, fmt.Errorf("%s: TLS handshake with the collector failed: %w (%s)", d.Name, err, tlsHint(err))
			}
			return watch(tc), nil
		},
	})
}
