package main

import (
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// eventTypesCommand prints the table of event types: what a SIEM rule or a
// destination's types= filter can key on.
func eventTypesCommand() *cli.Command {
	return &cli.Command{
		Name:  "event-types",
		Usage: "list the event types: name, default severity, alert or history only, CEF signature id, meaning",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "table", Usage: "`FORMAT`: table or json"},
		},
		Action: func(c *cli.Context) error {
			types := schema.Types()
			if c.String("format") == "json" {
				type row struct {
					Type        schema.EventType `json:"type"`
					Severity    schema.Severity  `json:"severity"`
					Alert       bool             `json:"alert"`
					SignatureID string           `json:"signature_id"`
					Name        string           `json:"name"`
					Text        string           `json:"text"`
				}
				rows := make([]row, len(types))
				for i, t := range types {
					rows[i] = row{t.Type, t.Severity, t.Alert, t.SignatureID, t.Name, t.Text}
				}
				return queryJSON(c.App.Writer, rows)
			}
			tb := newTable(c.App.Writer, col{"TYPE", 22}, col{"SEVERITY", 9}, col{"ALERT", 6}, col{"CEF ID", 7}, col{"MEANING", 0})
			for _, t := range types {
				tb.row(string(t.Type), t.Severity.String(), strconv.FormatBool(t.Alert), t.SignatureID, t.Text)
			}
			tb.flush()
			return nil
		},
	}
}
