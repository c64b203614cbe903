// Bounded soak of a running `lazyllm serve`: CLIENTS concurrent clients send requests for SECONDS
// seconds: completions and chat, streamed and not, some with LazyLLM, some with stop strings, and a
// quarter of them streams that the client hangs up on after the first SSE events (the socket is
// destroyed mid-stream). Meanwhile the server's resident memory (VmRSS) and open file descriptors
// (/proc/PID/fd) are sampled every SAMPLE_MS. It fails when:
//  - a request that was not hung up on did not get a valid, complete answer (answers.mjs; a 429 is
//    retried with the same payload, at most 100 times), or the server died;
//  - memory grew: the median RSS of the last third of the run (after the warm-up) exceeds the
//    median of the first third by more than RSS_TOLERANCE (see below);
//  - descriptors leaked: at any sample more than BASE + CLIENTS + FD_SLACK are open (each client
//    holds at most one connection; hung-up ones are closed within a second, at the server's next
//    write), the last third's median exceeds the first third's by more than FD_DRIFT, or once
//    idle (keep-alive connections close after 2 s) the count does not return exactly to BASE;
//  - the server's request counter disagrees with the attempts the clients sent, or its count of
//    cancelled generations exceeds the hang-ups or falls below half of them;
//  - afterwards the server is not idle (/health) or its greedy answers differ from those before.
// Prints one JSON summary.
// Usage: node soak.mjs URL API_KEY SERVER_PID SECONDS CLIENTS [--no-rss-check]   (SECONDS >= 15)
//   --no-rss-check: report RSS but do not judge it (AddressSanitizer's quarantine holds freed memory).
import http from 'node:http';
import { fdCount, rssKiB, send, serverRequestCount, sleep } from './answers.mjs';

const args = process.argv.slice(2);
const rssCheck = !args.includes('--no-rss-check');
const [url, apiKey, pidArg, secondsArg, clientsArg] = args.filter((a) => !a.startsWith('--'));
const pid = Number(pidArg), SECONDS = Number(secondsArg ?? 180), CLIENTS = Number(clientsArg ?? 32);
const SAMPLE_MS = 500;
const WARMUP_S = Math.max(5, SECONDS / 6);  // slots' sessions, malloc arenas and thread stacks settle
// RSS tolerance between the thirds: 5% of the first third's median, at least 4 MiB. The floor
// covers glibc's per-thread arenas and free lists, which grow and shrink by whole 64 KiB-1 MiB
// chunks as the connection threads (one per connection, 74 here) take turns. Spread over the
// requests between the middles of the two thirds, 4 MiB is a leak of about 1 KiB per request in a
// 30 s soak and a few hundred bytes in a 3-minute one (the summary prints the exact bound).
const RSS_TOLERANCE_KIB = (first) => Math.max(4096, 0.05 * first);
const FD_SLACK = 4;  // a connection accepted or closing between /proc reads
// Between samples the open connections swing with where the clients are in their request cycle
// (10-30 of 32); the medians of the thirds move by a few. A leak accumulates: 8 more descriptors
// in the last third fails here, and a single leaked one fails the exact check once idle.
const FD_DRIFT = 8;
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` };
const prompts = ['Once upon a time', 'The little dog ran to the park and', 'Lily wanted to play with her ball. '.repeat(6), 'Tom'];
const KINDS = ['completion', 'completion_stream', 'chat', 'chat_stream', 'completion_stream_hangup',
               'completion_lazy', 'chat_stream_hangup', 'completion_stream_lazy_stop'];
const HANGUP_AFTER = 3;  // SSE events read before hanging up

// Request i: its kind, payload and whether the client hangs up; a retry after a 429 sends the same.
function request(i) {
  const kind = KINDS[i % KINDS.length];
  const hangup = kind.endsWith('_hangup');
  const body = { model: 'm', max_tokens: hangup ? 200 : 4 + (i % 13), seed: i, stream: kind.includes('stream') };
  if (kind.startsWith('chat')) body.messages = [{ role: 'user', content: prompts[i % prompts.length] }];
  else body.prompt = prompts[i % prompts.length];
  if (kind.includes('lazy')) body.lazy = { enabled: true };
  if (kind.includes('stop')) body.stop = ['.', '!'];
  if (kind === 'chat_stream') body.stream_options = { include_usage: true };
  return { kind, hangup, req: { path: kind.startsWith('chat') ? '/v1/chat/completions' : '/v1/completions', body } };
}

// GET without keep-alive (agent: false closes the connection), so that it holds no descriptor after.
function get(path) {
  return new Promise((resolve, reject) => {
    http.get(url + path, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}
// Greedy answers of a completion and a chat request (validated), to compare before and after.
async function greedy() {
  const ask = async (path, body) => {
    const r = await send(url, headers, { path, body: { model: 'm', max_tokens: 24, temperature: 0, ...body } });
    if (r.outcome !== 'valid') throw new Error(`greedy ${path}: ${JSON.stringify(r)}`);
    return path.includes('chat') ? r.answer.choices[0].message.content : r.answer.choices[0].text;
  };
  return [await ask('/v1/completions', { prompt: 'Once upon a time' }),
          await ask('/v1/chat/completions', { messages: [{ role: 'user', content: 'Tom' }] })];
}
const cancelledTotal = async () => Number(/^lazyllm_requests_cancelled_total (\d+)$/m.exec(await get('/metrics'))?.[1] ?? NaN);
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};
const alive = () => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function main() {
  const problems = [];
  const rssStart = rssKiB(pid);
  const textsBefore = await greedy();
  const cancelledBefore = await cancelledTotal();
  await sleep(2500);  // the server closes idle keep-alive connections after 2 s
  const fdBase = fdCount(pid);
  const serverCountBefore = await serverRequestCount(url);

  const samples = [];  // {t, rss, fds}
  const t0 = performance.now();
  const now = () => (performance.now() - t0) / 1000;
  const sampler = setInterval(() => {
    if (alive()) samples.push({ t: now(), rss: rssKiB(pid), fds: fdCount(pid) });
  }, SAMPLE_MS);

  const counts = { sent: 0, completed: 0, hung_up: 0, hangup_finished_first: 0, failed: 0, retries_429: 0, max_retries_one_request: 0, unsent: 0 };
  const perKind = Object.fromEntries(KINDS.map((k) => [k, 0]));
  const errors = [];
  let next = 0;
  async function client() {
    while (now() < SECONDS && alive()) {
      const i = next++;
      const { kind, hangup, req } = request(i);
      counts.sent++;
      perKind[kind]++;
      const r = await send(url, headers, req, { abortAfter: hangup ? HANGUP_AFTER : 0 });
      counts.retries_429 += r.retries;
      counts.unsent += r.unsent;
      counts.max_retries_one_request = Math.max(counts.max_retries_one_request, r.retries);
      if (r.outcome === 'valid') {
        counts.completed++;
        if (hangup) counts.hangup_finished_first++;  // the whole answer came within HANGUP_AFTER events
      } else if (r.outcome === 'aborted') {
        counts.hung_up++;
      } else {
        counts.failed++;
        errors.push({ request: i, kind, ...r });
      }
    }
  }
  await Promise.all(Array.from({ length: CLIENTS }, client));
  const loadSeconds = now();
  clearInterval(sampler);
  if (!alive()) throw new Error('the server died during the soak');

  // Idle again: no busy slot or queued request, and every connection closed (keep-alive: 2 s).
  let health = null, fdIdle = null;
  for (let k = 0; k < 60; ++k) {
    await sleep(250);
    health = JSON.parse(await get('/health'));
    fdIdle = fdCount(pid);
    if (health.slots_busy === 0 && health.queued === 0 && fdIdle <= fdBase) break;
  }
  const serverCounted = (await serverRequestCount(url)) - serverCountBefore;
  const textsAfter = await greedy();
  const cancelled = (await cancelledTotal()) - cancelledBefore;
  const rssEnd = rssKiB(pid);

  const measured = samples.filter((s) => s.t >= WARMUP_S && s.t <= loadSeconds);
  const third = Math.floor(measured.length / 3);
  const first = measured.slice(0, third), last = measured.slice(measured.length - third);
  const rssFirst = median(first.map((s) => s.rss)), rssLast = median(last.map((s) => s.rss));
  const fdFirst = median(first.map((s) => s.fds)), fdLast = median(last.map((s) => s.fds));
  const fdMax = Math.max(...samples.map((s) => s.fds));
  const tol = RSS_TOLERANCE_KIB(rssFirst);

  if (counts.failed) problems.push(`${counts.failed} requests without a valid answer`);
  if (counts.completed + counts.hung_up + counts.failed !== counts.sent) problems.push('requests unaccounted for');
  // Every attempt that was sent is one the server counted (answered, rejected or hung up on): the
  // 'unsent' ones, retried, really never reached it.
  const reached = counts.sent + counts.retries_429;
  if (serverCounted !== reached) problems.push(`the server counted ${serverCounted} requests, the clients sent ${reached}`);
  if (counts.completed === 0 || counts.hung_up === 0) problems.push('no completed or no hung-up requests');
  // Only generations whose client hung up may be cancelled; and as a hang-up comes 3 events into
  // 200 tokens, most of them must be (the rest finished before the server's next write).
  if (cancelled > counts.hung_up) problems.push(`${cancelled} generations cancelled, ${counts.hung_up} hung up on`);
  if (cancelled < counts.hung_up / 2) problems.push(`only ${cancelled} of ${counts.hung_up} hung-up generations cancelled`);
  if (third < 5) problems.push(`only ${measured.length} samples after the warm-up`);
  if (rssCheck && rssLast > rssFirst + tol) problems.push(`RSS grew: median ${rssFirst} KiB in the first third, ${rssLast} KiB in the last (tolerance ${Math.round(tol)} KiB)`);
  if (fdMax > fdBase + CLIENTS + FD_SLACK) problems.push(`${fdMax} descriptors open at once (base ${fdBase}, ${CLIENTS} clients)`);
  if (fdLast > fdFirst + FD_DRIFT) problems.push(`descriptors grew: median ${fdFirst} in the first third, ${fdLast} in the last`);
  if (fdIdle !== fdBase) problems.push(`${fdIdle} descriptors open when idle, ${fdBase} before the soak`);
  if (health.slots_busy !== 0 || health.queued !== 0) problems.push(`not idle after the soak: ${JSON.stringify(health)}`);
  if (JSON.stringify(textsAfter) !== JSON.stringify(textsBefore)) problems.push(`greedy answers changed: ${JSON.stringify([textsBefore, textsAfter])}`);

  // Requests between the middles of the thirds (at the run's mean rate), and the RSS trend: the
  // median of each tenth of the measured span.
  const between = third ? (last[third >> 1].t - first[third >> 1].t) * (counts.sent / loadSeconds) : 0;
  const tenth = Math.max(1, Math.floor(measured.length / 10));
  const trend = [], fdTrend = [];
  for (let k = 0; k + tenth <= measured.length; k += tenth) {
    trend.push(median(measured.slice(k, k + tenth).map((s) => s.rss)));
    fdTrend.push(median(measured.slice(k, k + tenth).map((s) => s.fds)));
  }
  const summary = {
    seconds: SECONDS, load_seconds: +loadSeconds.toFixed(1), clients: CLIENTS, ...counts,
    requests_per_s: +(counts.completed / loadSeconds).toFixed(1), per_kind: perKind,
    server_counted: serverCounted, server_cancelled: cancelled,
    rss_kib: {
      start: rssStart, first_third_median: rssFirst, last_third_median: rssLast, tolerance: Math.round(tol),
      max: Math.max(...samples.map((s) => s.rss)), end_idle: rssEnd, judged: rssCheck,
      // The smallest leak per request that the tolerance still catches.
      detectable_leak_bytes_per_request: between > 0 ? Math.round((tol * 1024) / between) : null,
      trend_tenths: trend,
    },
    fds: { base: fdBase, first_third_median: fdFirst, last_third_median: fdLast, max: fdMax, end_idle: fdIdle, trend_tenths: fdTrend },
    samples: samples.length, warmup_s: +WARMUP_S.toFixed(1),
    problems, first_errors: errors.slice(0, 5),
  };
  console.log(JSON.stringify(summary));
  if (problems.length) {
    console.error(`soak failed: ${problems.join('; ')}`);
    process.exit(1);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
