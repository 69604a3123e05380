package web

import "net/http"

// route is one row of the console's route table.
type route struct {
	Method string
	Path   string // net/http pattern path
	// Page: an HTML page (an anonymous GET is sent to the login page);
	// otherwise JSON (an anonymous request gets 401).
	Page bool
	// Change: admins only, and CSRF/Origin checked.
	Change bool
	// Public: no authentication (the login form only).
	Public  bool
	Summary string
	Params  []param // query parameters, for the OpenAPI document
	Body    string  // request body, for the OpenAPI document
	h       func(http.ResponseWriter, *http.Request, *principal)
}

// param is a documented query or path parameter.
type param struct {
	Name, In, Desc string
	Required       bool
}

var (
	pSince    = param{"since", "query", "RFC 3339 start of the range", false}
	pUntil    = param{"until", "query", "RFC 3339 end of the range", false}
	pLimit    = param{"limit", "query", "most recent N (default 10000)", false}
	pType     = param{"type", "query", "event types, comma separated", false}
	pEndpoint = param{"endpoint", "query", "endpoint name or id", false}
	pMAC      = param{"mac", "query", "MAC address", false}
)

// routes is the one table of the console's pages and API routes.
func (s *Server) routes() []route {
	return []route{
		{Method: "GET", Path: "/login", Page: true, Public: true, Summary: "login form", h: s.loginPage},
		{Method: "POST", Path: "/login", Page: true, Public: true, Summary: "log in (rate-limited per source and account)", h: s.login},
		{Method: "POST", Path: "/logout", Page: true, Summary: "log out", h: s.logout},

		{Method: "GET", Path: "/{$}", Page: true, Summary: "overview", h: s.overviewPage},
		{Method: "GET", Path: "/endpoints", Page: true, Summary: "endpoints", h: s.endpointsPage},
		{Method: "GET", Path: "/endpoints/{id}", Page: true, Summary: "one endpoint", h: s.endpointPage},
		{Method: "GET", Path: "/unmanaged", Page: true, Summary: "unmanaged devices", h: s.unmanagedPage},
		{Method: "POST", Path: "/unmanaged/{mac}", Page: true, Change: true, Summary: "triage a device", h: s.triageForm},
		{Method: "GET", Path: "/alerts", Page: true, Summary: "alerts", h: s.alertsPage},
		{Method: "GET", Path: "/forensics", Page: true, Summary: "who had an IP at a time", h: s.forensicsPage},
		{Method: "GET", Path: "/enroll", Page: true, Summary: "enroll and revoke", h: s.enrollPage},
		{Method: "POST", Path: "/enroll", Page: true, Change: true, Summary: "enroll an endpoint, download its bundle", h: s.enrollForm},
		{Method: "POST", Path: "/revoke", Page: true, Change: true, Summary: "revoke an endpoint", h: s.revokeForm},

		{Method: "GET", Path: "/api/v1/openapi.json", Summary: "this document", h: s.openAPI},
		{Method: "GET", Path: "/api/v1/overview", Summary: "endpoints by status, alerts per hour over 24 h, capture, LAN zone, disk", h: s.apiOverview},
		{Method: "GET", Path: "/api/v1/endpoints", Summary: "endpoints, sorted, filtered and paged",
			Params: []param{{"q", "query", "text in name, id, IP, MAC or user", false}, {"status", "query", "status", false},
				{"sort", "query", "name, status, health, last_heartbeat or id", false}, {"desc", "query", "1 for descending", false},
				{"page", "query", "page number from 1", false}, {"per", "query", "rows per page (max 500)", false}}, h: s.apiEndpoints},
		{Method: "GET", Path: "/api/v1/endpoints/{id}", Summary: "one endpoint: state, alerts, status timeline, peers",
			Params: []param{{"id", "path", "endpoint id", true}}, h: s.apiEndpoint},
		{Method: "GET", Path: "/api/v1/unmanaged", Summary: "stations without heartbeat with vendor and triage", Params: []param{pSince, pUntil}, h: s.apiUnmanaged},
		{Method: "PUT", Path: "/api/v1/unmanaged/{mac}", Change: true, Summary: "set a station's triage state",
			Params: []param{{"mac", "path", "MAC address", true}}, Body: "Triage", h: s.apiTriage},
		{Method: "GET", Path: "/api/v1/alerts", Summary: "alerts", Params: []param{pSince, pUntil, pType, pEndpoint,
			{"severity", "query", "at least this severity", false}, pLimit}, h: s.apiAlerts},
		{Method: "GET", Path: "/api/v1/events", Summary: "server-sent events: every event as it is stored", h: s.apiEvents},
		{Method: "GET", Path: "/api/v1/who", Summary: "who had an IP at a time, with health and users then",
			Params: []param{{"ip", "query", "IP address", true}, {"at", "query", "RFC 3339 instant (default now)", false}}, h: s.apiWho},
		{Method: "GET", Path: "/api/v1/vendors/{mac}", Summary: "the IEEE registry's organisation for a MAC",
			Params: []param{{"mac", "path", "MAC address", true}}, h: s.apiVendor},
		{Method: "GET", Path: "/api/v1/enrolled", Summary: "enrolled certificates (endpoints and admins)", h: s.apiEnrolled},
		{Method: "POST", Path: "/api/v1/enroll", Change: true, Summary: "enroll an endpoint (or admin) and return its bundle", Body: "EnrollRequest", h: s.apiEnroll},
		{Method: "POST", Path: "/api/v1/revoke", Change: true, Summary: "revoke an endpoint (or admin)", Body: "EnrollRequest", h: s.apiRevoke},
		// The local API's routes, the same handlers the CLI uses.
		{Method: "GET", Path: "/api/v1/ping", Summary: "liveness and next sequence number", h: s.delegate},
		{Method: "GET", Path: "/api/v1/atrisk", Summary: "the at-risk list pushed to agents", h: s.delegate},
		{Method: "GET", Path: "/api/v1/history", Summary: "an endpoint's or MAC's events", Params: []param{pEndpoint, pMAC, pSince, pUntil, pType, pLimit}, h: s.delegate},
		{Method: "GET", Path: "/api/v1/traffic", Summary: "a MAC's traffic per minute", Params: []param{{"mac", "query", "MAC address", true}, pSince, pUntil}, h: s.delegate},
		{Method: "GET", Path: "/api/v1/backup", Summary: "gzip backup of the whole history", h: s.delegate},
	}
}

// delegate serves /api/v1/X with the local API's /v1/X handler.
func (s *Server) delegate(w http.ResponseWriter, r *http.Request, _ *principal) {
	if s.o.API == nil {
		writeError(w, http.StatusNotFound, "not served by this console")
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/v1/" + r.URL.Path[len("/api/v1/"):]
	r2.URL.RawPath = ""
	s.o.API.ServeHTTP(w, r2)
}
