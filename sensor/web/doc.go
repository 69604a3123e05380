// Package web owns the operator console: server-rendered HTML pages and the
// REST API under /api/v1 (described by /api/v1/openapi.json), served over
// HTTPS by the sensor itself. Everything it serves is embedded (no CDN; it
// works on an appliance that reaches nothing); charts are inline SVG drawn
// on the server.
//
// Every route is a row of one table (routes.go) that says who may use it;
// the same table mounts the routes and writes the OpenAPI document. A
// request is authenticated by an administrator certificate (as the admin
// API), an API token (Authorization: Bearer) or a session cookie from the
// login page. Viewers read; admins enroll, revoke and triage. A change made
// with a session needs the session's CSRF token and, from a browser, a
// matching Origin. Every change is recorded as an operator_change event.
package web
