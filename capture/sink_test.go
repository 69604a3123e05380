package capture

import (
	"slices"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/schema"
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
	if len(sink.binds) != 4 || !slices.ContainsFunc(sink.binds, func(b schema.Binding) bool { return b.Source == SourceARP }) {
		t.Errorf("bindings %v, want the 4 ARP claims", sink.binds)
	}
	if released != 4 {
		t.Errorf("%d periods released, want all 4", released)
	}
}

// TestReporterHandsFlowStartsOverInBatches: a report with more flow starts
// than flowBatch reaches the sink in order, in calls of at most flowBatch,
// none lost.
func TestReporterHandsFlowStartsOverInBatches(t *testing.T) {
	const n = 2*flowBatch + 7
	p := &period{}
	for i := range n {
		p.flows = append(p.flows, flowRec{dstPort: uint16(i), v4: true, ts: int64(i)})
	}
	sink := &callSink{}
	rep := newReporter(sink, false)
	rep.add(p)
	rep.emit()
	var sizes []int
	next := 0
	for _, call := range sink.flowCalls {
		sizes = append(sizes, len(call))
		for _, f := range call {
			if int(f.DstPort) != next || f.Time.UnixNano() != int64(next) {
				t.Fatalf("flow start %d arrived as port %d at %v", next, f.DstPort, f.Time)
			}
			next++
		}
	}
	if want := []int{flowBatch, flowBatch, 7}; !slices.Equal(sizes, want) {
		t.Errorf("batches of %v flow starts, want %v", sizes, want)
	}
}
