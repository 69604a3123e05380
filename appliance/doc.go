// Package appliance is the root of tapbeat's bootable appliance: a hybrid
// BIOS/UEFI ISO whose initramfs holds a plain-Go init (cmd/tapbeat-init) as
// PID 1, the tapbeat daemon and the kernel modules the appliance needs.
//
// The subpackages each own one step of the boot: config (appliance settings
// from the data disk and the kernel command line), kmod (module loading),
// disk (finding, formatting and mounting the data disk), netsetup (the
// management and capture NICs), supervise (running tapbeat with restarts),
// status (the console status screen) and power (the ACPI power button).
// build.sh and iso.mk build the image; isotest boots it under qemu.
package appliance
