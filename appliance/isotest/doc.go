// Package isotest boots the appliance ISO under qemu (TCG, BIOS and UEFI)
// with a management NIC on user networking, a capture NIC fed with frames
// over a UDP socket and a data disk, and checks the appliance from outside:
// the console, the forwarded ports, the frames it must never send, and the
// data disk after shutdown. It has only tests; see ISO.md.
package isotest
