// Command tapbeat-init is PID 1 of the tapbeat appliance. It mounts the
// kernel filesystems, loads the modules the image carries, mounts the data
// disk (found by label, formatted only when allowed), configures the
// management and capture NICs, starts and supervises tapbeat run, draws the
// status screen and powers off cleanly on the ACPI power button.
package main

import (
	"fmt"
	"os"
)

// Set at link time.
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tapbeat-init:", err)
	}
	// PID 1 must never exit: the kernel would panic.
	if os.Getpid() == 1 {
		select {}
	}
	os.Exit(1)
}
