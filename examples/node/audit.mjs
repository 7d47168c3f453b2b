// Send one audit event to ractogateway-kafka and print its receipt.
// Node 20+ has fetch built in, so this needs no npm packages.
const baseUrl = (process.env.RG_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");

const event = {
  user_id: "example-node",
  model: "gpt-4o",
  prompt: "What is the capital of France?",
  response: "Paris.",
  metadata: { client: "node" },
};

const res = await fetch(`${baseUrl}/audit`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(event),
});
const body = await res.text();

// Only 201 means Kafka acknowledged the record; treat anything else as "not recorded".
if (res.status !== 201) {
  console.error(`POST /audit answered ${res.status}: ${body}`);
  process.exitCode = 1; // not process.exit(): let stderr flush
} else {
  console.log(JSON.stringify(JSON.parse(body)));
}
