#!/usr/bin/env bash
# Send one audit event to ractogateway-kafka and print its receipt.
set -euo pipefail

RG_URL="${RG_URL:-http://127.0.0.1:8080}"

# The service answers 201 only once Kafka has acknowledged the record, so a zero exit
# status here means the event is durably stored. --fail-with-body turns any 4xx/5xx into
# a non-zero exit while still showing the service's error JSON.
curl --fail-with-body -sS \
  -X POST "${RG_URL%/}/audit" \
  -H 'Content-Type: application/json' \
  -w '\n' \
  --data-binary @- <<'JSON'
{
  "user_id": "example-curl",
  "model": "gpt-4o",
  "prompt": "What is the capital of France?",
  "response": "Paris.",
  "metadata": {"client": "curl"}
}
JSON
