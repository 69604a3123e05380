package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

func TestEventTypesListsTheTable(t *testing.T) {
	out, err := runApp(t, "event-types", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Type        string `json:"type"`
		Severity    string `json:"severity"`
		Alert       bool   `json:"alert"`
		SignatureID string `json:"signature_id"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	types := schema.Types()
	if len(rows) != len(types) {
		t.Fatalf("%d rows, the table has %d types", len(rows), len(types))
	}
	for i, ti := range types {
		r := rows[i]
		if r.Type != string(ti.Type) || r.Severity != ti.Severity.String() || r.Alert != ti.Alert || r.SignatureID != ti.SignatureID {
			t.Errorf("row %d %+v, table %+v", i, r, ti)
		}
	}
	table, err := runApp(t, "event-types")
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range types {
		if !strings.Contains(table, string(ti.Type)+" ") {
			t.Errorf("table lacks %s:\n%s", ti.Type, table)
		}
	}
}
