//go:build !race

package lanzone

const raceEnabled = false
