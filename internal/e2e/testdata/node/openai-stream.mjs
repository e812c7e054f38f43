// A streamed chat completion through the official OpenAI Node SDK, as a
// sandboxed agent would make it: a dummy key, the real base URL, no proxy.
// hermes-netd is expected to intercept the connection and put the real key
// in. Trust comes from NODE_EXTRA_CA_CERTS, set by the caller.
//
// Output, one JSON object a line:
//   {"t": <ms since the epoch>, "chunk": <the SDK's chunk>}   for each chunk
//   {"t": <ms>, "done": true, "chunks": N, "text": "<whole answer>"}
// On failure: {"error": "...", "status": <HTTP status or null>} on stderr,
// exit status 1.
//
// Environment: OPENAI_STREAM_BASE_URL (default https://api.openai.com/v1),
// OPENAI_STREAM_API_KEY (default sk-dummy), OPENAI_STREAM_MODEL (default
// gpt-4o-mini).
import OpenAI from "openai";

const now = () => performance.timeOrigin + performance.now();

const client = new OpenAI({
  baseURL: process.env.OPENAI_STREAM_BASE_URL || "https://api.openai.com/v1",
  apiKey: process.env.OPENAI_STREAM_API_KEY || "sk-dummy",
  maxRetries: 0, // a failure must show at once, not after back-off
  timeout: 30_000,
});

try {
  const stream = await client.chat.completions.create({
    model: process.env.OPENAI_STREAM_MODEL || "gpt-4o-mini",
    messages: [{ role: "user", content: "Say hello, one word at a time." }],
    stream: true,
  });
  let text = "";
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices?.[0]?.delta?.content ?? "";
    console.log(JSON.stringify({ t: now(), chunk }));
  }
  console.log(JSON.stringify({ t: now(), done: true, chunks, text }));
} catch (err) {
  console.error(JSON.stringify({ error: String(err?.message ?? err), status: err?.status ?? null }));
  process.exit(1);
}
