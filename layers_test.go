package tapbeat_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tapbeat/tapbeat/"

// layers is the order of DESIGN.md's "Layers", bottom first: the order data
// flows in. A package may import packages of its own layer and of the
// layers below it, never one above. A pattern ending in "/..." covers the
// folder and everything under it.
var layers = []struct {
	name     string
	packages []string
}{
	{"schema", []string{"sensor/schema", "sensor/safetext"}},
	{"inputs", []string{"capture", "lanzone/config", "lanzone/pki", "lanzone/wire", "sensor/access"}},
	{"endpoints", []string{"lanzone", "cmd/agent"}},
	{"correlation", []string{"sensor", "sensor/inventory"}},
	{"storage", []string{"sensor/history"}},
	{"alerts", []string{"sensor/alert/syslog", "sensor/alert"}},
	{"api", []string{"sensor/api", "sensor/web"}},
	{"fleet", []string{"sensor/fleet"}},
	{"daemon", []string{"sensor/daemon"}},
	{"lab", []string{"sensor/testenv", "sensor/lab", "sensor/labdeploy"}},
	{"commands", []string{"cmd/tapbeat", "cmd/tapbeat-agent", "cmd/internal/..."}},
	{"appliance", []string{"appliance/..."}},
	{"tools", []string{"capture/internal/...", "lanzone/loadtest", "lanzone/internal/...",
		"sensor/history/synth", "sensor/history/internal/...", "sensor/labdeploy/internal/...",
		"sensor/inventory/internal/...", "sensor/web/internal/...", "sensor/fleet/internal/..."}},
}

// onlyBadger is the one package that may import Badger, in its code or its
// tests: everything else reaches the database through its interface.
const onlyBadger = "sensor/history"

type goPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// layerOf returns the index of the layer rel (a path relative to the
// module) belongs to, -1 for the module root, -2 for none.
func layerOf(rel string) int {
	if rel == "" {
		return -1
	}
	for i, l := range layers {
		for _, p := range l.packages {
			if rel == p || (strings.HasSuffix(p, "/...") && (rel == strings.TrimSuffix(p, "/...") || strings.HasPrefix(rel, strings.TrimSuffix(p, "...")))) {
				return i
			}
		}
	}
	return -2
}

func TestLayers(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages; run from the module root", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), strings.TrimSuffix(module, "/"))
		from := layerOf(rel)
		if from == -2 {
			t.Errorf("package %s is in no layer: add it to DESIGN.md's layers and to layers in layers_test.go", rel)
			continue
		}
		if from == -1 {
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			to := layerOf(dep)
			if to > from {
				t.Errorf("%s (layer %s) imports %s, which is above it (layer %s): move the shared part down, or pass it in through an interface the importer defines",
					rel, layers[from].name, dep, layers[to].name)
			}
		}
	}
}

func TestOnlyHistoryImportsBadger(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		if rel == onlyBadger {
			continue
		}
		for _, list := range [][]string{p.Imports, p.TestImports, p.XTestImports} {
			for _, imp := range list {
				if strings.HasPrefix(imp, "github.com/dgraph-io/badger") {
					t.Errorf("%s imports %s: only %s uses Badger; use its Space and Batch", rel, imp, onlyBadger)
				}
			}
		}
	}
}

// TestLayersCatchAnUpwardImport checks the check: an import running up is
// reported.
func TestLayersCatchAnUpwardImport(t *testing.T) {
	wire, correlator := layerOf("lanzone/wire"), layerOf("sensor")
	agent := layerOf("cmd/agent")
	if wire < 0 || correlator < 0 || agent < 0 || !(correlator > wire) || !(correlator > agent) {
		t.Fatalf("the wire protocol (%d) and the agent (%d) must sit below the correlator (%d)", wire, agent, correlator)
	}
	if layerOf("sensor/history/internal/histbench") != len(layers)-1 || layerOf("sensor/history") == len(layers)-1 {
		t.Fatal("folder patterns match the wrong packages")
	}
}
