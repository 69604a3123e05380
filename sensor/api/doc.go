// Package api owns tapbeat's local and admin API: HTTP+JSON over a Unix
// socket (root-only, mode 0600) for the CLI on the sensor itself, and the
// same handlers over mutual TLS on the management address for appliances
// without a shell. It serves the forensic queries of package history, the
// live endpoint states the daemon passes in (Live), and an online backup
// stream; the daemon may mount further routes.
//
// Client speaks the same API, and Backend is the interface both a Client and
// a Local store satisfy, so the CLI runs the same code whether it asks the
// daemon or opens a database nobody holds.
package api
