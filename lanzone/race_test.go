//go:build race

package lanzone

// raceEnabled: the race detector slows every goroutine several times over.
const raceEnabled = true
