package capture

import (
	"slices"
	"testing"

	"github.com/tapbeat/tapbeat/sensor"
)

func TestReporterMergesEveryPeriodOfAReport(t *testing.T) {
	periodWith := func(ports ...uint16) *period {
		p := &period{}
		for _, port := range ports {
			p.flows = append(p.flows, flowRec{dstPort: port, v4: true, ts: 1})
		}
		p.evidence = append(p.evidence, timedEvidence{Evidence: Evidence{MAC: 1, IP: addrOf4(0xc0000201), Source: SourceARP}, Time: 1})
		return p
	}
	sink := &callSink{}
	rep := newReporter(sink, false)
	released := 0
	rep.release = func(*period) { released++ }

	rep.add(periodWith(1)) // one worker: the report goes out from the period itself
	rep.emit()
	// Several workers: three periods, none with stations, in one report.
	rep.add(periodWith(2))
	rep.add(periodWith(3, 4))
	rep.add(periodWith(5))
	rep.emit()

	var got [][]uint16
	for _, call := range sink.flowCalls {
		got = append(got, nil)
		for _, f := range call {
			got[len(got)-1] = append(got[len(got)-1], f.DstPort)
		}
	}
	if want := [][]uint16{{1}, {2, 3, 4, 5}}; !slices.EqualFunc(got, want, slices.Equal[[]uint16]) {
		t.Errorf("flow starts by report %v, want %v", got, want)
	}
	if len(sink.binds) != 4 || !slices.ContainsFunc(sink.binds, func(b sensor.Binding) bool { return b.Source == SourceARP }) {
		t.Errorf("bindings %v, want the 4 ARP claims", sink.binds)
	}
	if released != 4 {
		t.Errorf("%d periods released, want all 4", released)
	}
}
