// Two chat completions through the recording proxy with the official OpenAI JavaScript SDK, one
// plain and one streamed, printed as one JSON document for tests/api/test_openai_sdks.py.
//
// Environment: PROXY_BASE_URL (…/openai/v1), OPENAI_API_KEY (the app's key, passed upstream),
// RG_API_KEY (the sidecar's key, sent as X-API-Key; may be empty), RG_USER (X-RG-User).
import OpenAI from "openai";

// The SDK drops SSE comments, and the stream's receipt is one (`: rg-receipt {json}`): a fetch
// that tees each body keeps the raw text beside what the SDK parses.
const rawBodies = [];
async function teeingFetch(url, init) {
  const response = await fetch(url, init);
  if (!response.body) return response;
  const [forSdk, forUs] = response.body.tee();
  rawBodies.push(new Response(forUs).text());
  return new Response(forSdk, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

function receiptHeaders(headers) {
  const found = {};
  for (const [name, value] of headers) {
    if (name.startsWith("x-rg-")) found[name] = value;
  }
  return found;
}

const client = new OpenAI({
  baseURL: process.env.PROXY_BASE_URL,
  defaultHeaders: {
    "X-API-Key": process.env.RG_API_KEY || undefined,
    "X-RG-User": process.env.RG_USER || undefined,
  },
  fetch: teeingFetch,
  maxRetries: 0,
});

const plain = await client.chat.completions
  .create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Say hello in one word." }],
  })
  .withResponse();

const streamed = await client.chat.completions
  .create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Count to three." }],
    stream: true,
    stream_options: { include_usage: true },
  })
  .withResponse();
let text = "";
let finishReason = null;
let usage = null;
let streamId = null;
for await (const chunk of streamed.data) {
  streamId = chunk.id;
  for (const choice of chunk.choices) {
    text += choice.delta?.content ?? "";
    finishReason = choice.finish_reason ?? finishReason;
  }
  usage = chunk.usage ?? usage;
}
const streamBody = await rawBodies[1];
const receiptLine = streamBody.split("\n").find((line) => line.startsWith(": rg-receipt "));

console.log(
  JSON.stringify({
    plain: {
      id: plain.data.id,
      text: plain.data.choices[0].message.content,
      finish_reason: plain.data.choices[0].finish_reason,
      usage: plain.data.usage,
      headers: receiptHeaders(plain.response.headers),
    },
    stream: {
      id: streamId,
      text,
      finish_reason: finishReason,
      usage,
      headers: receiptHeaders(streamed.response.headers),
      receipt: receiptLine ? JSON.parse(receiptLine.slice(": rg-receipt ".length)) : null,
    },
  }),
);
