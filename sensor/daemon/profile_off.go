//go:build !profile

package daemon

import "net/http"

// profiling adds nothing: profiles are served only by a binary built with
// the tag `profile` (see profile.go).
func profiling(*http.ServeMux) {}
