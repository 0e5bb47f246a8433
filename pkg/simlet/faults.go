package simlet

import (
	"encoding/json"
	"net/http"
)

// FaultHandler serves fault injection over HTTP, answering JSON:
//
//	POST /faults/kill-node?node=N
//	POST /faults/cut-pool?pool=P      (heartbeats of P's nodes stop)
//	POST /faults/restore-pool?pool=P  (heartbeats resume)
//	GET  /faults                      (current faults)
func (s *Simlet) FaultHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		cut, killed := s.Faults()
		writeJSON(w, http.StatusOK, map[string][]string{"cutPools": nonNil(cut), "killedNodes": nonNil(killed)})
	})
	mux.HandleFunc("POST /faults/kill-node", func(w http.ResponseWriter, r *http.Request) {
		node := r.URL.Query().Get("node")
		if node == "" {
			writeJSON(w, http.StatusBadRequest, errBody("missing query parameter node"))
			return
		}
		if err := s.KillNode(node); err != nil {
			writeJSON(w, http.StatusNotFound, errBody(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"killed": node})
	})
	for path, cut := range map[string]bool{"POST /faults/cut-pool": true, "POST /faults/restore-pool": false} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			pool := r.URL.Query().Get("pool")
			if pool == "" {
				writeJSON(w, http.StatusBadRequest, errBody("missing query parameter pool"))
				return
			}
			if err := s.CutPool(pool, cut); err != nil {
				writeJSON(w, http.StatusNotFound, errBody(err.Error()))
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"pool": pool, "cut": cut})
		})
	}
	return mux
}

func errBody(msg string) map[string]any {
	return map[string]any{"error": map[string]string{"message": msg, "type": "invalid_request_error"}}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
