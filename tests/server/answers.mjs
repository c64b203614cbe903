// Shared by load.mjs and soak.mjs: sends one completion or chat request with fetch and checks
// that the answer is complete and has the OpenAI shape; retries a request the server turned away
// with 429 (queue full) with the same payload, a bounded number of times.
import { readdirSync, readFileSync } from 'node:fs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
export const fdCount = (pid) => readdirSync(`/proc/${pid}/fd`).length;

const FINISH = ['stop', 'length'];
const isCount = (n) => Number.isInteger(n) && n >= 0;

// Throws unless `usage` is complete and consistent with the request's max_tokens and the finish reason.
function checkUsage(usage, maxTokens, finish) {
  if (!usage || typeof usage !== 'object') throw new Error('no usage');
  const { prompt_tokens: p, completion_tokens: c, total_tokens: t } = usage;
  if (!isCount(p) || p === 0 || !isCount(c) || t !== p + c) throw new Error(`bad token counts ${JSON.stringify(usage)}`);
  if (c > maxTokens) throw new Error(`${c} completion tokens for max_tokens ${maxTokens}`);
  // A 'length' finish means the budget was spent (or the request timed out, which it says).
  if (finish === 'length' && c !== maxTokens && usage.timed_out !== true) throw new Error(`'length' after ${c} of ${maxTokens} tokens`);
  if (!(usage.ttft_ms > 0)) throw new Error(`bad ttft_ms ${usage.ttft_ms}`);
  if (!(usage.queue_ms >= 0 && usage.queue_ms < usage.ttft_ms)) throw new Error(`bad queue_ms ${usage.queue_ms}`);
  const f = usage.prompt_computed_fraction;
  if (!(f > 0 && f <= 1)) throw new Error(`bad prompt_computed_fraction ${f}`);
}

// Throws unless `j` is a complete non-streamed answer; returns its usage.
export function checkAnswer(chat, j, maxTokens) {
  if (j.object !== (chat ? 'chat.completion' : 'text_completion')) throw new Error(`object ${j.object}`);
  if (typeof j.id !== 'string' || !j.id.startsWith(chat ? 'chatcmpl-' : 'cmpl-')) throw new Error(`id ${j.id}`);
  if (!Array.isArray(j.choices) || j.choices.length !== 1 || j.choices[0].index !== 0) throw new Error('choices');
  const c = j.choices[0];
  if (chat ? c.message?.role !== 'assistant' || typeof c.message.content !== 'string' : typeof c.text !== 'string') {
    throw new Error(`choice ${JSON.stringify(c)}`);
  }
  if (!FINISH.includes(c.finish_reason)) throw new Error(`finish_reason ${c.finish_reason}`);
  checkUsage(j.usage, maxTokens, c.finish_reason);
  return j.usage;
}

// Throws unless `text` is a complete SSE stream: JSON chunks of one id, exactly one finish_reason
// (on the last choice chunk, which carries the usage; an include_usage chunk may follow), then
// `data: [DONE]` and nothing after it. Returns the usage.
export function checkStream(chat, text, maxTokens, includeUsage = false) {
  if (!text.endsWith('data: [DONE]\n\n')) throw new Error(`stream does not end with data: [DONE]: ...${JSON.stringify(text.slice(-120))}`);
  const events = text.slice(0, -2).split('\n\n').filter((e) => !e.startsWith(':'));  // ': keep-alive' comments
  if (events.pop() !== 'data: [DONE]') throw new Error('no [DONE]');
  if (!events.length) throw new Error('no chunks');
  let id = null, finish = null, usage = null, afterFinish = 0;
  for (const e of events) {
    if (!e.startsWith('data: ')) throw new Error(`not a data event: ${e.slice(0, 80)}`);
    const j = JSON.parse(e.slice(6));
    if (j.object !== (chat ? 'chat.completion.chunk' : 'text_completion')) throw new Error(`chunk object ${j.object}`);
    if (id === null) id = j.id;
    else if (j.id !== id) throw new Error('chunk ids differ');
    if (finish !== null) {  // only an include_usage chunk (no choices) may follow the finish
      if (!includeUsage || j.choices.length !== 0 || !j.usage || ++afterFinish > 1) throw new Error('chunk after the finish');
      usage = j.usage;
      continue;
    }
    if (j.choices.length !== 1) throw new Error('chunk without exactly one choice');
    const c = j.choices[0];
    if (chat ? typeof c.delta !== 'object' : typeof c.text !== 'string') throw new Error(`chunk choice ${JSON.stringify(c)}`);
    if (c.finish_reason !== null) {
      if (!FINISH.includes(c.finish_reason)) throw new Error(`finish_reason ${c.finish_reason}`);
      finish = c.finish_reason;
      usage = j.usage;
    }
  }
  if (finish === null) throw new Error('no finish_reason');
  if (includeUsage && afterFinish !== 1) throw new Error('no include_usage chunk');
  checkUsage(usage, maxTokens, finish);
  return usage;
}

// One attempt. Returns {outcome: 'valid' | 'rejected' (429 with Retry-After and an error object)
// | 'unsent' (the connection closed before a response) | 'aborted' (we hung up mid-stream, as
// asked) | 'invalid', ...}.
// abortAfter: for a stream, hang up (destroy the socket) after that many SSE events.
export async function attempt(url, headers, req, abortAfter = 0) {
  const chat = req.path.includes('chat');
  const { body } = req;
  const maxTokens = body.max_tokens;
  const t0 = performance.now();
  const ctl = new AbortController();
  let res, hungUp = false;
  try {
    res = await fetch(url + req.path, { method: 'POST', headers, body: JSON.stringify(body), signal: ctl.signal });
  } catch (e) {
    // The connection closed before any response: on a reused keep-alive connection, the server's
    // idle timeout can close it just as the request goes out. Such a request is sent again; the
    // callers check against the server's request counter that it never reached the server.
    const code = e.cause?.code;
    if (['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'].includes(code)) return { outcome: 'unsent', detail: code };
    return { outcome: 'invalid', detail: `fetch: ${code ?? e.message}` };
  }
  try {
    if (res.status === 429) {
      const j = await res.json();
      if (!res.headers.get('retry-after') || typeof j.error?.message !== 'string') {
        return { outcome: 'invalid', detail: `429 without Retry-After or error object: ${JSON.stringify(j)}` };
      }
      return { outcome: 'rejected' };
    }
    if (res.status !== 200) return { outcome: 'invalid', detail: `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}` };
    if (!body.stream) {
      const j = await res.json();
      return { outcome: 'valid', usage: checkAnswer(chat, j, maxTokens), answer: j };
    }
    if (!res.headers.get('content-type')?.startsWith('text/event-stream')) return { outcome: 'invalid', detail: 'not text/event-stream' };
    let ttft = null, text = '';
    const decoder = new TextDecoder();
    try {
      for await (const bytes of res.body) {
        if (ttft === null) ttft = performance.now() - t0;
        text += decoder.decode(bytes, { stream: true });
        if (abortAfter && !text.endsWith('data: [DONE]\n\n') && text.split('\n\n').length - 1 >= abortAfter) {
          hungUp = true;
          ctl.abort();  // a connection with its body unread cannot be reused: undici destroys the socket
          break;
        }
      }
    } catch (e) {
      if (!hungUp) throw e;  // leaving the loop after abort() rejects with an AbortError
    }
    if (hungUp) return { outcome: 'aborted' };
    const includeUsage = body.stream_options?.include_usage === true;
    return { outcome: 'valid', ttft, usage: checkStream(chat, text, maxTokens, includeUsage) };
  } catch (e) {
    return { outcome: 'invalid', detail: `${body.stream ? 'stream' : 'answer'}: ${e.message}` };
  }
}

// Sends `req` until it gets a valid answer (or is aborted as asked), retrying THIS request (the
// same payload) after a 429 or an unsent attempt, at most maxRetries times. Returns the last
// attempt's result with `retries` (429s) and `unsent` added; 'invalid' when an answer was invalid
// (not retried: that is a server error) or the retries ran out.
export async function send(url, headers, req, { abortAfter = 0, maxRetries = 100 } = {}) {
  let retries = 0, unsent = 0;
  for (;;) {
    const r = await attempt(url, headers, req, abortAfter);
    if (r.outcome === 'rejected') ++retries;
    else if (r.outcome === 'unsent') ++unsent;
    else return { ...r, retries, unsent };
    if (retries + unsent > maxRetries) return { outcome: 'invalid', retries, unsent, detail: `no answer after ${maxRetries} retries` };
    if (r.outcome === 'rejected') await sleep(100 + Math.random() * 200);  // well under Retry-After (1 s): keeps the queue full
  }
}

// The server's count of requests to the completion routes (/metrics, any status).
export async function serverRequestCount(url) {
  const text = await (await fetch(url + '/metrics', { headers: { Connection: 'close' } })).text();
  let n = 0;
  for (const m of text.matchAll(/^lazyllm_requests_total\{path="\/v1\/(?:chat\/)?completions",status="\d+"\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}
