// Bounded load test: CLIENTS concurrent clients send REQUESTS completions (half streaming, some
// with LazyLLM) over loopback. Every request must get a valid, complete answer: a non-streamed one
// has the OpenAI shape, a finish_reason and consistent usage; a stream is JSON chunks ending with a
// finish_reason and `data: [DONE]` (answers.mjs). A 429 (queue full, with Retry-After) is expected
// under this load: that same request is sent again, at most MAX_RETRIES times. Anything else
// (another status, an invalid or cut answer, a network error, retries exhausted) fails the test.
// Prints one JSON summary per round (counts, requests/s, TTFT percentiles, the server's resident
// memory before and after) and exits 1 unless answered_valid == sent == REQUESTS in every round.
// TTFT: the server's usage.ttft_ms (arrival to first token, queueing included) of every request,
// and for streams also as the client sees it (request sent to first text event).
// Usage: node load.mjs URL API_KEY SERVER_PID [CLIENTS=32] [REQUESTS=300] [ROUNDS=1]
import { rssKiB, send, serverRequestCount, sleep } from './answers.mjs';

const [url, apiKey, pid, clientsArg, requestsArg, roundsArg] = process.argv.slice(2);
const ROUNDS = Number(roundsArg ?? 1);
const CLIENTS = Number(clientsArg ?? 32), REQUESTS = Number(requestsArg ?? 300);
const MAX_RETRIES = 100;  // 429s for one request; with 100-300 ms pauses, 10-30 s of a full queue
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` };
const prompts = ['Once upon a time', 'The little dog ran to the park and', 'Lily wanted to play with her ball. '.repeat(6), 'Tom'];

// Request i's payload; a retry sends exactly this again.
function request(i) {
  const body = { model: 'm', prompt: prompts[i % prompts.length], max_tokens: 8 + (i % 25), stream: i % 2 === 0, seed: i };
  if (i % 3 === 0) body.lazy = { enabled: true };
  return { path: '/v1/completions', body };
}

const pct = (v, p) => {
  if (!v.length) return null;
  const s = [...v].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(1);
};

// One measured round: CLIENTS clients share REQUESTS requests.
async function round() {
  const rssBefore = rssKiB(pid);
  const countBefore = await serverRequestCount(url);
  let next = 0, sent = 0, valid = 0, rejected = 0, unsent = 0, maxRetries = 0;
  const errors = [], ttftStream = [], ttftServer = [];
  const t0 = performance.now();
  async function client() {
    while (next < REQUESTS) {
      const i = next++;
      sent++;
      const r = await send(url, headers, request(i), { maxRetries: MAX_RETRIES });
      rejected += r.retries;
      unsent += r.unsent;
      maxRetries = Math.max(maxRetries, r.retries);
      if (r.outcome === 'valid') {
        valid++;
        ttftServer.push(r.usage.ttft_ms);
        if (r.ttft !== undefined) ttftStream.push(r.ttft);
      } else {
        errors.push({ request: i, ...r });
      }
    }
  }
  await Promise.all(Array.from({ length: CLIENTS }, client));
  const secs = (performance.now() - t0) / 1000;
  await sleep(1000);
  const serverCounted = (await serverRequestCount(url)) - countBefore;
  return {
    clients: CLIENTS, requests: REQUESTS, sent, answered_valid: valid, failed: errors.length,
    rejected_429: rejected, unsent, server_counted: serverCounted, max_retries_one_request: maxRetries, retry_limit: MAX_RETRIES,
    seconds: +secs.toFixed(2), requests_per_s: +(valid / secs).toFixed(1),
    ttft_server_ms: { p50: pct(ttftServer, 50), p90: pct(ttftServer, 90), p99: pct(ttftServer, 99) },
    ttft_stream_client_ms: { p50: pct(ttftStream, 50), p90: pct(ttftStream, 90), p99: pct(ttftStream, 99) },
    rss_kib: { before: rssBefore, after: rssKiB(pid) },
    first_errors: errors.slice(0, 5),
  };
}

async function main() {
  for (let i = 0; i < 8; ++i) {  // warm-up: every slot has allocated its sessions
    const r = await send(url, headers, request(i));
    if (r.outcome !== 'valid') throw new Error(`warm-up request ${i}: ${JSON.stringify(r)}`);
  }
  await sleep(300);
  let failed = false;
  for (let r = 0; r < ROUNDS; ++r) {
    const s = await round();
    console.log(JSON.stringify(s));
    if (!(s.sent === REQUESTS && s.answered_valid === s.sent && s.failed === 0)) {
      console.error(`round ${r}: ${s.answered_valid} valid answers for ${s.sent} requests sent (${REQUESTS} planned)`);
      failed = true;
    }
    // Each attempt that reached the server (all but the 'unsent' ones, which were sent again) is
    // one that the server counted.
    if (s.server_counted !== s.sent + s.rejected_429) {
      console.error(`round ${r}: the server counted ${s.server_counted} requests, the clients sent ${s.sent + s.rejected_429}`);
      failed = true;
    }
  }
  if (failed) process.exit(1);
}
main().catch((e) => { console.error(e); process.exit(1); });
