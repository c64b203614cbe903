// Bounded load test: CLIENTS concurrent clients send REQUESTS completions (half streaming, some
// with LazyLLM) over loopback. Anything but 200 or an intended 429 is an error. Prints one JSON
// summary (requests/s, TTFT percentiles, resident memory of the server before and after).
// TTFT: the server's usage.ttft_ms (arrival to first token, queueing included) of every request,
// and for streams also as the client sees it (request sent to first text event).
// Usage: node load.mjs URL API_KEY SERVER_PID [CLIENTS=32] [REQUESTS=300] [ROUNDS=1]
import { readFileSync } from 'node:fs';

const [url, apiKey, pid, clientsArg, requestsArg, roundsArg] = process.argv.slice(2);
const ROUNDS = Number(roundsArg ?? 1);
const CLIENTS = Number(clientsArg ?? 32), REQUESTS = Number(requestsArg ?? 300);
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` };
const prompts = ['Once upon a time', 'The little dog ran to the park and', 'Lily wanted to play with her ball. '.repeat(6), 'Tom'];

const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function one(i) {
  const stream = i % 2 === 0;
  const body = { model: 'm', prompt: prompts[i % prompts.length], max_tokens: 8 + (i % 25), stream, seed: i };
  if (i % 3 === 0) body.lazy = { enabled: true };
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers, body: JSON.stringify(body) });
  if (res.status !== 200) {
    await res.text();
    return { status: res.status, retryAfter: res.headers.get('retry-after') };
  }
  if (!stream) {
    const j = await res.json();
    return { status: 200, serverTtft: j.usage.ttft_ms, stream };
  }
  let ttft = null, text = '', done = false;
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    if (ttft === null) ttft = performance.now() - t0;  // completions stream text from the first event
    text += decoder.decode(bytes, { stream: true });
  }
  done = text.endsWith('data: [DONE]\n\n');
  const usage = /"ttft_ms":([0-9.e+-]+)/.exec(text);  // the final chunk's usage
  return { status: done && usage ? 200 : 'truncated', ttft, serverTtft: usage && Number(usage[1]), stream };
}

const pct = (v, p) => {
  if (!v.length) return null;
  const s = [...v].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(1);
};

// One measured round: CLIENTS clients share REQUESTS requests; a 429 is retried after a pause.
async function round() {
  const rssBefore = rssKiB();
  let next = 0, ok = 0, rejected = 0;
  const errors = [], ttftStream = [], ttftServer = [];
  const t0 = performance.now();
  async function client() {
    while (next < REQUESTS) {
      const i = next++;
      const r = await one(i);
      if (r.status === 200) {
        ok++;
        ttftServer.push(r.serverTtft);
        if (r.stream) ttftStream.push(r.ttft);
      } else if (r.status === 429 && r.retryAfter) {
        rejected++;
        next--;  // the request is tried again
        if (rejected > 50 * REQUESTS) throw new Error('too many 429s');
        await sleep(100 + Math.random() * 200);  // well under Retry-After, to keep the queue full
      } else {
        errors.push(r);
      }
    }
  }
  await Promise.all(Array.from({ length: CLIENTS }, client));
  const secs = (performance.now() - t0) / 1000;
  await sleep(1000);
  return {
    clients: CLIENTS, requests_ok: ok, rejected_429: rejected, errors: errors.length,
    seconds: +secs.toFixed(2), requests_per_s: +(ok / secs).toFixed(1),
    ttft_server_ms: { p50: pct(ttftServer, 50), p90: pct(ttftServer, 90), p99: pct(ttftServer, 99) },
    ttft_stream_client_ms: { p50: pct(ttftStream, 50), p90: pct(ttftStream, 90), p99: pct(ttftStream, 99) },
    rss_kib: { before: rssBefore, after: rssKiB() },
    first_errors: errors.slice(0, 5),
  };
}

async function main() {
  for (let i = 0; i < 8; ++i) await one(i);  // warm-up: every slot has allocated its sessions
  await sleep(300);
  let failed = false;
  for (let r = 0; r < ROUNDS; ++r) {
    const summary = await round();
    console.log(JSON.stringify(summary));
    failed ||= summary.errors > 0;
  }
  if (failed) process.exit(1);
}
main().catch((e) => { console.error(e); process.exit(1); });
