package web

import (
	"net/http"
	"strings"
)

// openAPIDoc writes the OpenAPI 3.1 document of the /api/v1 rows of the
// route table.
func (s *Server) openAPIDoc() map[string]any {
	paths := map[string]any{}
	for _, rt := range s.routes() {
		if !strings.HasPrefix(rt.Path, "/api/v1/") {
			continue
		}
		op := map[string]any{
			"summary":     rt.Summary,
			"operationId": strings.ToLower(rt.Method) + strings.NewReplacer("/api/v1/", "_", "/", "_", "{", "", "}", "", ".", "_").Replace(rt.Path),
			"responses": map[string]any{
				"200": map[string]any{"description": "OK"},
				"400": map[string]any{"description": "bad parameter", "content": errorContent},
				"401": map[string]any{"description": "no session, token or certificate", "content": errorContent},
			},
		}
		if rt.Change {
			op["description"] = "Admins only. With a session: X-CSRF-Token header and a same-origin Origin. Recorded as an operator_change event."
			op["responses"].(map[string]any)["403"] = map[string]any{"description": "not an admin, or CSRF/Origin check failed", "content": errorContent}
		}
		var params []any
		for _, p := range rt.Params {
			params = append(params, map[string]any{"name": p.Name, "in": p.In, "required": p.Required || p.In == "path",
				"description": p.Desc, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Body != "" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/" + rt.Body}}}}
		}
		switch rt.Path {
		case "/api/v1/events":
			op["responses"].(map[string]any)["200"] = map[string]any{"description": "text/event-stream of JSON events",
				"content": map[string]any{"text/event-stream": map[string]any{}}}
		case "/api/v1/backup":
			op["responses"].(map[string]any)["200"] = map[string]any{"description": "gzip Badger backup",
				"content": map[string]any{"application/gzip": map[string]any{}}}
		}
		item, _ := paths[rt.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.Path] = item
		}
		item[strings.ToLower(rt.Method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "tapbeat sensor API", "version": "1",
			"description": "The data behind every console page. Viewers read; admins also enroll, revoke and triage."},
		"paths": paths,
		"security": []any{
			map[string]any{"bearer": []any{}}, map[string]any{"session": []any{}}, map[string]any{"adminCertificate": []any{}},
		},
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearer":           map[string]any{"type": "http", "scheme": "bearer", "description": "tapbeat token add --name NAME --role viewer|admin"},
				"session":          map[string]any{"type": "apiKey", "in": "cookie", "name": SessionCookie},
				"adminCertificate": map[string]any{"type": "mutualTLS", "description": "a certificate from tapbeat enroll --admin"},
			},
			"schemas": map[string]any{
				"Error": map[string]any{"type": "object", "properties": map[string]any{"error": map[string]any{"type": "string"}}},
				"Triage": map[string]any{"type": "object", "required": []any{"state"}, "properties": map[string]any{
					"state":   map[string]any{"type": "string", "enum": []any{"new", "authorized", "investigating", "blocked"}},
					"note":    map[string]any{"type": "string", "maxLength": 500},
					"expires": map[string]any{"type": "string", "format": "date-time"},
				}},
				"EnrollRequest": map[string]any{"type": "object", "required": []any{"name"}, "properties": map[string]any{
					"name":  map[string]any{"type": "string"},
					"admin": map[string]any{"type": "boolean"},
				}},
			},
		},
	}
}

var errorContent = map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request, _ *principal) {
	writeJSON(w, s.openAPIDoc())
}
