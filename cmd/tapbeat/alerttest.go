package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/alert"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// alertTestCommand is "tapbeat alert-test --to URL...": send one test alert
// straight to each syslog destination (no outbox) and report whether it
// counts as delivered, to check a destination's address, format and TLS
// settings before the daemon uses them.
func alertTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "alert-test",
		Usage:     "send a test alert to syslog destinations and report delivery",
		ArgsUsage: " ",
		Description: "Each --to takes a destination URL as in the configuration's alerts.syslog list, e.g.\n" +
			"tls://siem.example:6514?format=cef&ca=/etc/tapbeat/siem-ca.pem. The alert has type\n" +
			"status_changed, severity notice, and reason \"tapbeat test alert\".",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "to", Required: true, Usage: "destination `URL` (repeat for several)"},
			&cli.StringFlag{Name: "reason", Value: "tapbeat test alert", Usage: "reason text of the test alert"},
		},
		Action: func(c *cli.Context) error {
			var dests []alert.Destination
			for _, raw := range c.StringSlice("to") {
				d, err := alert.ParseDestination(raw)
				if err != nil {
					return err
				}
				dests = append(dests, d)
			}
			ev := schema.Event{
				Seq:      uint64(time.Now().Unix()),
				Time:     time.Now(),
				Type:     schema.EventStatusChanged,
				Severity: schema.SeverityNotice,
				Reason:   c.String("reason"),
			}
			failed := 0
			for _, d := range dests {
				start := time.Now()
				if err := alert.Send(c.Context, d, []schema.Event{ev}, version); err != nil {
					failed++
					fmt.Fprintf(c.App.ErrWriter, "FAIL %v\n", err)
					continue
				}
				fmt.Fprintf(c.App.Writer, "ok   %s: %s (sequence id %d, %s)\n", d.Name, alert.DeliveryRule(d.Scheme), ev.Seq, time.Since(start).Round(time.Millisecond))
			}
			if failed > 0 {
				return errors.New("some destinations did not take the test alert (see above)")
			}
			return nil
		},
	}
}
