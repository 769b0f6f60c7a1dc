// upstream is a small OpenAI-compatible server for the node tests, run as a pod behind a
// Service so that the in-cluster gateway reaches it by DNS name. Answers name the pod that
// served them; streams are paced (-chunks, -interval) so that a test can have streams in
// flight while gateways roll.
//
//	upstream -listen :8080 -chunks 20 -interval 100ms
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	chunks := flag.Int("chunks", 10, "content chunks per streamed answer")
	interval := flag.Duration("interval", 100*time.Millisecond, "pause before each streamed chunk")
	flag.Parse()
	host, _ := os.Hostname()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"message":"invalid JSON","type":"invalid_request_error"}}`, http.StatusBadRequest)
			return
		}
		reply := fmt.Sprintf("upstream %s model %s", host, req.Model)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"id": "up-1", "object": "chat.completion", "created": 0, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
					"message": map[string]any{"role": "assistant", "content": reply}}},
				"usage": map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
			})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		flusher, _ := w.(http.Flusher)
		send := func(delta map[string]any, finish any) bool {
			chunk, _ := json.Marshal(map[string]any{
				"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
			})
			if _, err := fmt.Fprintf(w, "data: %s\n\n", chunk); err != nil {
				return false
			}
			flusher.Flush()
			return true
		}
		if !send(map[string]any{"role": "assistant", "content": ""}, nil) {
			return
		}
		for i := 0; i < *chunks; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(*interval):
			}
			content := fmt.Sprintf("%d ", i)
			if i == *chunks-1 {
				content = reply
			}
			if !send(map[string]any{"content": content}, nil) {
				return
			}
		}
		send(map[string]any{}, "stop")
		fmt.Fprint(w, "data: [DONE]\n\n")
		flusher.Flush()
	})

	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		server.Shutdown(ctx)
	}()
	log.Printf("upstream %s serving on %s (streams: %d chunks, %s apart)", host, *listen, *chunks, *interval)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
