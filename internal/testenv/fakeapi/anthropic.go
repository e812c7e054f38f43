package fakeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// anthropicHandler serves Anthropic's messages API.
func (s *Server) anthropicHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.anthropicKeyOK(w, r) {
			return
		}
		switch {
		case r.URL.Path == "/v1/messages" && r.Method == http.MethodPost:
			s.messages(w, r)
		case r.URL.Path == "/v1/models" && r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, map[string]any{
				"data": []map[string]any{{
					"type": "model", "id": "claude-sonnet-4-5",
					"display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z",
				}},
				"has_more": false, "first_id": "claude-sonnet-4-5",
				"last_id": "claude-sonnet-4-5",
			})
		default:
			anthropicError(w, http.StatusNotFound, "not_found_error",
				fmt.Sprintf("Not Found: %s %s", r.Method, r.URL.Path))
		}
	})
}

// anthropicKeyOK checks for exactly one x-api-key header holding the key.
func (s *Server) anthropicKeyOK(w http.ResponseWriter, r *http.Request) bool {
	got := r.Header.Values("X-Api-Key")
	if len(got) == 1 && got[0] == s.key(Anthropic) {
		return true
	}
	msg := "invalid x-api-key"
	if len(got) == 0 {
		msg = "x-api-key header is required"
	}
	anthropicError(w, http.StatusUnauthorized, "authentication_error", msg)
	return false
}

func anthropicError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{
		"type":  "error",
		"error": map[string]any{"type": typ, "message": msg},
	})
}

type messagesRequest struct {
	Model     string            `json:"model"`
	MaxTokens int               `json:"max_tokens"`
	Messages  []json.RawMessage `json:"messages"`
	Stream    bool              `json:"stream"`
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	var req messagesRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		anthropicError(w, http.StatusBadRequest, "invalid_request_error",
			"request body is not valid JSON: "+err.Error())
		return
	}
	if req.Model == "" || req.MaxTokens <= 0 || len(req.Messages) == 0 {
		anthropicError(w, http.StatusBadRequest, "invalid_request_error",
			"model, max_tokens and messages are required")
		return
	}

	id := "msg_" + randomID()
	inTokens := len(req.Messages) * 8
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": req.Model,
			"content":     []map[string]any{{"type": "text", "text": Reply}},
			"stop_reason": "end_turn", "stop_sequence": nil,
			"usage": map[string]int{"input_tokens": inTokens,
				"output_tokens": len(ReplyPieces)},
		})
		return
	}

	// The stream follows Anthropic's event sequence: message_start, one text
	// block with a delta per piece, message_delta, message_stop.
	type event struct {
		name string
		data map[string]any
	}
	events := []event{
		{"message_start", map[string]any{"type": "message_start", "message": map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": req.Model,
			"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]int{"input_tokens": inTokens, "output_tokens": 1},
		}}},
		{"content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "text", "text": ""}}},
	}
	for _, piece := range ReplyPieces {
		events = append(events, event{"content_block_delta", map[string]any{
			"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": piece},
		}})
	}
	events = append(events,
		event{"content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}},
		event{"message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil},
			"usage": map[string]int{"output_tokens": len(ReplyPieces)}}},
		event{"message_stop", map[string]any{"type": "message_stop"}},
	)

	sse := startSSE(w)
	for _, ev := range events {
		if !sse.send(ev.name, ev.data) || !s.sleep(r.Context()) {
			return
		}
	}
}
