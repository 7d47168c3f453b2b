// Command ractogateway-audit sends one audit event to ractogateway-kafka and prints its receipt.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// AuditEvent is the body of POST /audit; the service fills event_id and timestamp_utc.
type AuditEvent struct {
	UserID   string         `json:"user_id"`
	Model    string         `json:"model"`
	Prompt   string         `json:"prompt"`
	Response string         `json:"response"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Receipt says where Kafka stored the event and the SHA-256 of the stored bytes.
type Receipt struct {
	EventID      string `json:"event_id"`
	Topic        string `json:"topic"`
	Partition    int32  `json:"partition"`
	Offset       int64  `json:"offset"`
	TimestampUTC string `json:"timestamp_utc"`
	Digest       string `json:"digest"`
	Status       string `json:"status"`
}

func main() {
	receipt, err := send(AuditEvent{
		UserID:   "example-go",
		Model:    "gpt-4o",
		Prompt:   "What is the capital of France?",
		Response: "Paris.",
		Metadata: map[string]any{"client": "go"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(receipt)
	fmt.Println(string(out))
}

func send(event AuditEvent) (*Receipt, error) {
	baseURL := os.Getenv("RG_URL")
	if baseURL == "" {
		baseURL = "http://127.0.0.1:8080"
	}
	body, err := json.Marshal(event)
	if err != nil {
		return nil, err
	}
	// http.DefaultClient never times out; a stuck broker should not hang the caller forever.
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post(strings.TrimSuffix(baseURL, "/")+"/audit", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	// Only 201 means Kafka acknowledged the record; the error body says why it did not.
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("POST /audit answered %s: %s", resp.Status, data)
	}
	var receipt Receipt
	if err := json.Unmarshal(data, &receipt); err != nil {
		return nil, fmt.Errorf("decoding receipt: %w", err)
	}
	return &receipt, nil
}
