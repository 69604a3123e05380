package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/pki"
)

// enrolledEndpoint is one row of `tapbeat endpoints`.
type enrolledEndpoint struct {
	pki.Entry
	Kind        string `json:"kind"`
	State       string `json:"state"`
	Fingerprint string `json:"fingerprint"`
}

func endpointsCommand() *cli.Command {
	return &cli.Command{
		Name:  "endpoints",
		Usage: "list enrolled endpoints with their organisation",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR`", Required: true},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"},
			&cli.BoolFlag{Name: "all", Usage: "include revoked certificates and administrators"},
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			ts, err := pki.OpenTrustStore(c.String("dir"))
			if err != nil {
				return err
			}
			rows := []enrolledEndpoint{}
			for _, e := range ts.Entries() {
				if !c.Bool("all") && (!e.Active() || e.Admin) {
					continue
				}
				r := enrolledEndpoint{Entry: e, Kind: "endpoint", State: "enrolled", Fingerprint: e.Fingerprint.String()}
				if e.Admin {
					r.Kind = "admin"
				}
				if !e.Active() {
					r.State = "revoked"
				} else if time.Now().After(e.NotAfter) {
					r.State = "expired"
				}
				rows = append(rows, r)
			}
			if format == "json" {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tENDPOINT ID\tORG\tKIND\tSTATE\tENROLLED\tEXPIRES")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.ID, r.Org, r.Kind, r.State,
					r.Enrolled.UTC().Format(time.RFC3339), r.NotAfter.UTC().Format("2006-01-02"))
			}
			return tw.Flush()
		},
	}
}
