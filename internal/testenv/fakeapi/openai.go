package fakeapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ReplyPieces are the pieces every fake chat answer is made of, in order; a
// streamed answer sends one per chunk.
var ReplyPieces = []string{
	"Hello", " from", " the", " fake", " provider", ",", " one", " piece", " at", " a",
	" time", ".",
}

// Reply is the whole fake chat answer.
var Reply = strings.Join(ReplyPieces, "")

// openAIModels are what GET /v1/models lists, per provider.
var openAIModels = map[Provider][]string{
	OpenAI: {"gpt-4o-mini", "gpt-4.1"},
	NIM:    {"meta/llama-3.1-8b-instruct", "nvidia/llama-3.1-nemotron-70b-instruct"},
}

// openAIHandler serves the OpenAI API, or NVIDIA NIM's OpenAI-compatible one.
func (s *Server) openAIHandler(p Provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.bearerOK(p, w, r) {
			return
		}
		switch {
		case r.URL.Path == "/v1/chat/completions" && r.Method == http.MethodPost:
			s.chatCompletion(p, w, r)
		case r.URL.Path == "/v1/models" && r.Method == http.MethodGet:
			listModels(p, w)
		default:
			openAIError(w, http.StatusNotFound, "invalid_request_error", "unknown_url",
				fmt.Sprintf("Unknown request URL: %s %s.", r.Method, r.URL.Path))
		}
	})
}

// bearerOK checks for exactly one "Authorization: Bearer <key>" and answers
// 401 in the provider's shape otherwise. The answer never repeats the key.
func (s *Server) bearerOK(p Provider, w http.ResponseWriter, r *http.Request) bool {
	got := r.Header.Values("Authorization")
	if len(got) == 1 && got[0] == "Bearer "+s.key(p) {
		return true
	}
	if p == NIM {
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"status": http.StatusUnauthorized, "title": "Unauthorized",
			"detail": "Authentication failed",
		})
		return false
	}
	if len(got) == 0 {
		openAIError(w, http.StatusUnauthorized, "invalid_request_error", "",
			"You didn't provide an API key. Send it as a Bearer token in the "+
				"Authorization header.")
		return false
	}
	openAIError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
		"Incorrect API key provided.")
	return false
}

// openAIError answers in OpenAI's error shape; code "" becomes null.
func openAIError(w http.ResponseWriter, status int, typ, code, msg string) {
	var c any
	if code != "" {
		c = code
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": c,
	}})
}

func listModels(p Provider, w http.ResponseWriter) {
	var data []map[string]any
	for _, id := range openAIModels[p] {
		data = append(data, map[string]any{
			"id": id, "object": "model", "created": 1700000000, "owned_by": "system",
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

type chatRequest struct {
	Model    string            `json:"model"`
	Messages []json.RawMessage `json:"messages"`
	Stream   bool              `json:"stream"`
	Options  struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (s *Server) chatCompletion(p Provider, w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "",
			"We could not parse the JSON body of your request: "+err.Error())
		return
	}
	if req.Model == "" || len(req.Messages) == 0 {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "",
			"The request needs a model and at least one message.")
		return
	}

	id, created := "chatcmpl-"+randomID(), time.Now().Unix()
	usage := map[string]int{
		"prompt_tokens":     len(req.Messages) * 8,
		"completion_tokens": len(ReplyPieces),
		"total_tokens":      len(req.Messages)*8 + len(ReplyPieces),
	}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []map[string]any{{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": Reply},
				"logprobs":      nil,
				"finish_reason": "stop",
			}},
			"usage": usage,
		})
		return
	}

	// A streamed answer: one chunk per piece, each flushed on its own after
	// a pause, so that a client behind a buffering proxy would see them bunch.
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created,
			"model": req.Model, "choices": []map[string]any{{
				"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish,
			}},
		}
	}
	events := []map[string]any{chunk(map[string]any{"role": "assistant", "content": ""}, nil)}
	for _, piece := range ReplyPieces {
		events = append(events, chunk(map[string]any{"content": piece}, nil))
	}
	events = append(events, chunk(map[string]any{}, "stop"))
	if req.Options.IncludeUsage {
		last := chunk(nil, nil)
		last["choices"], last["usage"] = []any{}, usage
		events = append(events, last)
	}

	sse := startSSE(w)
	for _, ev := range events {
		if !sse.send("", ev) || !s.sleep(r.Context()) {
			return
		}
	}
	sse.raw("data: [DONE]\n\n")
}

// sseWriter writes server-sent events, flushing each.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sseWriter {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// send writes one event (with an "event:" line when name is set); false when
// the client went away.
func (s *sseWriter) send(name string, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	var sb strings.Builder
	if name != "" {
		sb.WriteString("event: " + name + "\n")
	}
	sb.WriteString("data: ")
	sb.Write(b)
	sb.WriteString("\n\n")
	return s.raw(sb.String())
}

func (s *sseWriter) raw(text string) bool {
	if _, err := io.WriteString(s.w, text); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
