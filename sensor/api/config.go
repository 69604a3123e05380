package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// ConfigRequest asks the daemon to change one setting (POST /v1/config),
// named as `tapbeat config set` names it.
type ConfigRequest struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ConfigAnswer is the LAN-zone configuration in force after a change.
type ConfigAnswer struct {
	HeartbeatInterval string   `json:"heartbeat_interval"`
	Addresses         []string `json:"addresses"`
}

// HandleConfig mounts POST /v1/config. set changes the daemon's
// configuration file and applies the result the way every other change is
// applied; an error is the client's (a bad key or value) and is returned
// to it.
func (s *Server) HandleConfig(set func(ctx context.Context, key, value string) (ConfigAnswer, error)) {
	s.Handle("/v1/config", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			s.fail(w, r, badRequest{fmt.Errorf("%s %s: use POST", r.Method, r.URL.Path)})
			return
		}
		var req ConfigRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			s.fail(w, r, badRequest{fmt.Errorf("configuration request: %w (want {\"key\": KEY, \"value\": VALUE})", err)})
			return
		}
		ans, err := set(r.Context(), req.Key, req.Value)
		if err != nil {
			s.fail(w, r, badRequest{err})
			return
		}
		s.log.Info("configuration changed", "key", req.Key, "value", req.Value, "peer", r.RemoteAddr, "by", clientName(r))
		writeJSON(w, ans)
	}))
}

// SetConfig asks the daemon to change one setting and returns the
// configuration then in force.
func (c *Client) SetConfig(ctx context.Context, key, value string) (ConfigAnswer, error) {
	var a ConfigAnswer
	err := c.post(ctx, "/v1/config", ConfigRequest{Key: key, Value: value}, &a)
	return a, err
}
