package schema

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTypesComplete checks every row of the event type table, and that
// every EventType constant declared in this package has one.
func TestTypesComplete(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "types.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[EventType]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "EventType" {
				continue
			}
			for _, v := range vs.Values {
				lit := v.(*ast.BasicLit)
				name, _ := strconv.Unquote(lit.Value)
				declared[EventType(name)] = true
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("found no EventType constants in types.go")
	}
	sigs := map[string]EventType{}
	rows := map[EventType]bool{}
	for _, ti := range Types() {
		if rows[ti.Type] {
			t.Errorf("%s: two rows", ti.Type)
		}
		rows[ti.Type] = true
		if !declared[ti.Type] {
			t.Errorf("%s: a row but no constant in types.go", ti.Type)
		}
		if ti.Type == "" || strings.ToLower(string(ti.Type)) != string(ti.Type) || strings.ContainsAny(string(ti.Type), " ,") {
			t.Errorf("%q: a type name is lower case, without spaces or commas", ti.Type)
		}
		if ti.Severity > SeverityDebug {
			t.Errorf("%s: severity %d out of range", ti.Type, ti.Severity)
		}
		if !ti.Alert && ti.Severity.AtLeast(SeverityNotice) {
			t.Errorf("%s: not an alert but of severity %s; history-only types are info or debug", ti.Type, ti.Severity)
		}
		if _, err := strconv.Atoi(ti.SignatureID); err != nil {
			t.Errorf("%s: signature id %q is not a number", ti.Type, ti.SignatureID)
		}
		if other, dup := sigs[ti.SignatureID]; dup {
			t.Errorf("%s: signature id %s already belongs to %s", ti.Type, ti.SignatureID, other)
		}
		sigs[ti.SignatureID] = ti.Type
		if ti.Name == "" || ti.Text == "" {
			t.Errorf("%s: needs a name and a text", ti.Type)
		}
		if ti.NewDetails != nil {
			d1, d2 := ti.NewDetails(), ti.NewDetails()
			if d1 == nil || reflect.ValueOf(d1).Kind() != reflect.Pointer || d1 == d2 {
				t.Errorf("%s: NewDetails must return a new pointer each call", ti.Type)
			}
		}
	}
	for typ := range declared {
		if !rows[typ] {
			t.Errorf("%s: declared in types.go but has no row in the table", typ)
		}
	}
}

// TestEventJSONRoundTrip checks that every type's details come back from
// JSON as its own Go type, with the values they had.
func TestEventJSONRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)
	for _, ti := range Types() {
		ev := Event{Seq: 7, Time: at, Type: ti.Type, Severity: ti.Severity,
			MACs: []MAC{MustParseMAC("02:00:00:00:00:01")}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
		if ti.NewDetails != nil {
			d := ti.NewDetails()
			fillNonZero(reflect.ValueOf(d).Elem())
			ev.Details = d
		}
		b, err := json.Marshal(&ev)
		if err != nil {
			t.Fatalf("%s: %v", ti.Type, err)
		}
		var got Event
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v\n%s", ti.Type, err, b)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v\njson %s", ti.Type, got, ev, b)
		}
	}
}

// fillNonZero gives every field a value its JSON keeps (omitempty drops zero values).
func fillNonZero(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		switch v.Interface().(type) {
		case time.Time:
			v.Set(reflect.ValueOf(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)))
			return
		case netip.Addr:
			v.Set(reflect.ValueOf(netip.MustParseAddr("10.0.0.9")))
			return
		case netip.AddrPort:
			v.Set(reflect.ValueOf(netip.MustParseAddrPort("10.0.0.9:443")))
			return
		}
		for i := range v.NumField() {
			fillNonZero(v.Field(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			v.Index(i).SetUint(uint64(i + 1))
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillNonZero(s.Index(0))
		v.Set(s)
	case reflect.String:
		switch v.Type() {
		case reflect.TypeFor[Status]():
			v.SetString(string(StatusGreen))
		default:
			v.SetString("x")
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(3)
	case reflect.Uint8:
		v.SetUint(1) // Health: green
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(3)
	case reflect.Float64:
		v.SetFloat(1.5)
	}
}

func TestUnknownTypeKeepsDetails(t *testing.T) {
	in := `{"seq":1,"time":"2026-03-01T00:00:00Z","type":"from_a_newer_build","severity":"warning","details":{"a":1}}`
	var ev Event
	if err := json.Unmarshal([]byte(in), &ev); err != nil {
		t.Fatal(err)
	}
	raw, ok := ev.Details.(RawDetails)
	if !ok || string(raw) != `{"a":1}` {
		t.Fatalf("details %#v, want RawDetails {\"a\":1}", ev.Details)
	}
	out, err := json.Marshal(&ev)
	if err != nil || string(out) != in {
		t.Fatalf("re-encoded %s (%v), want %s", out, err, in)
	}
	if !ev.IsAlert() {
		t.Error("an unknown type of severity warning is not an alert; unknown types must fall back to severity")
	}
}
