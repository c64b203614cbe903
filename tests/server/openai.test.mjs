// End-to-end tests of a running `lazyllm serve` with the official openai client (node:test).
// The server is started by run_server_tests.sh, which sets LAZYLLM_URL and LAZYLLM_API_KEY.
// No test returns early or skips itself: a condition a test depends on is asserted, so it fails
// rather than passes when the condition does not hold (run_server_tests.sh also fails on any skip).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

assert.ok(process.env.LAZYLLM_URL, 'LAZYLLM_URL is not set');
assert.ok(process.env.LAZYLLM_API_KEY, 'LAZYLLM_API_KEY is not set');
const baseURL = process.env.LAZYLLM_URL + '/v1';
const apiKey = process.env.LAZYLLM_API_KEY;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

function checkUsage(usage) {
  assert.ok(usage.prompt_tokens > 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.ok(usage.ttft_ms > 0, 'usage.ttft_ms');
  assert.ok(usage.queue_ms >= 0 && usage.queue_ms < usage.ttft_ms, `usage.queue_ms ${usage.queue_ms}`);
  assert.ok(usage.prompt_computed_fraction > 0 && usage.prompt_computed_fraction <= 1);
  const cached = usage.prompt_tokens_details.cached_tokens;
  assert.ok(Number.isInteger(cached) && cached >= 0 && cached < usage.prompt_tokens, `cached_tokens ${cached}`);
}

test('models lists the served model', async () => {
  const page = await client.models.list();
  assert.equal(page.data.length, 1);
  assert.equal(page.data[0].object, 'model');
});

test('completion, greedy and deterministic', async () => {
  const ask = () => client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 12, temperature: 0 });
  const a = await ask();
  const b = await ask();
  assert.equal(a.object, 'text_completion');
  assert.equal(typeof a.choices[0].text, 'string');
  assert.ok(['stop', 'length'].includes(a.choices[0].finish_reason));
  assert.ok(a.usage.completion_tokens <= 12);
  assert.equal(a.choices[0].text, b.choices[0].text);
  checkUsage(a.usage);
  assert.equal(a.usage.prompt_computed_fraction, 1);
});

test('seeded sampling repeats', async () => {
  const ask = () => client.completions.create({ model: 'm', prompt: 'Tom', max_tokens: 10, temperature: 0.9, top_p: 0.9, top_k: 20, seed: 5 });
  assert.equal((await ask()).choices[0].text, (await ask()).choices[0].text);
});

test('chat completion', async () => {
  const r = await client.chat.completions.create({
    model: 'm',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me a story.' }],
    max_tokens: 8,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  checkUsage(r.usage);
});

test('streaming chat gives the same text as non-streaming', async () => {
  const params = { model: 'm', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 16, temperature: 0 };
  const whole = await client.chat.completions.create(params);
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (finish === null) {  // content chunks, the last of them with the finish_reason
      assert.equal(chunk.choices.length, 1, JSON.stringify(chunk));
      text += chunk.choices[0].delta.content ?? '';
      finish = chunk.choices[0].finish_reason;
    } else {  // then exactly one include_usage chunk: no choices, the usage
      assert.equal(usage, null, 'a second chunk after the finish_reason');
      assert.equal(chunk.choices.length, 0, JSON.stringify(chunk));
      assert.ok(chunk.usage, 'the chunk after the finish_reason has no usage');
      usage = chunk.usage;
    }
  }
  assert.ok(chunks >= 3, `${chunks} chunks`);
  assert.ok(['stop', 'length'].includes(whole.choices[0].finish_reason));
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(usage, 'no include_usage chunk');
  assert.equal(text, whole.choices[0].message.content);
  checkUsage(usage);
  // The repeat finds the first request's prompt in the prefix cache: all but its last token.
  assert.equal(usage.prompt_tokens_details.cached_tokens, usage.prompt_tokens - 1);
  const counts = (u) => ({ ...u, ttft_ms: 0, queue_ms: 0, prompt_tokens_details: null });
  assert.deepEqual(counts(usage), counts(whole.usage));
});

test('streaming completion', async () => {
  const stream = await client.completions.create({ model: 'm', prompt: 'The dog', max_tokens: 10, stream: true, temperature: 0 });
  let text = '', finish = null;
  for await (const chunk of stream) {
    assert.equal(finish, null, 'a chunk after the finish_reason');
    assert.equal(chunk.choices.length, 1, JSON.stringify(chunk));
    assert.equal(typeof chunk.choices[0].text, 'string');
    text += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason;
  }
  const whole = await client.completions.create({ model: 'm', prompt: 'The dog', max_tokens: 10, temperature: 0 });
  assert.ok(whole.choices[0].text.length > 0, 'empty completion');
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
});

test('stop strings end the text before them', async () => {
  const free = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
  const t = free.choices[0].text;
  // The test needs a text to cut: greedy 'Once upon a time' goes on for all 24 tokens.
  assert.ok(t.length >= 6, `the free text is too short to cut: ${JSON.stringify(t)}`);
  const stop = t.slice(3, 5);
  const cut = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop: [stop] });
  assert.equal(cut.choices[0].text, t.slice(0, t.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, 'stop');
});

test('lazy extension lowers the computed fraction', async () => {
  const prompt = 'Lily and Tom went to the park to play with a ball. '.repeat(8);
  const r = await client.completions.create({ model: 'm', prompt, max_tokens: 2, lazy: { enabled: true, prune: '0.5:0.3' } });
  assert.ok(r.usage.prompt_computed_fraction < 1, JSON.stringify(r.usage));
  const off = await client.completions.create({ model: 'm', prompt, max_tokens: 2, lazy: { enabled: false } });
  assert.equal(off.usage.prompt_computed_fraction, 1);
});

async function expectError(promise, status, param) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, status);
    assert.equal(typeof e.error?.message, 'string');
    assert.equal(e.param, param);
    return true;
  });
}

test('errors are OpenAI error objects', async () => {
  await expectError(client.completions.create({ model: 'm', prompt: 'x', max_tokens: -1 }), 400, 'max_tokens');
  await expectError(client.completions.create({ model: 'm', prompt: 'x', temperature: 5 }), 400, 'temperature');
  await expectError(client.completions.create({ model: 'm', prompt: 'x', n: 2 }), 400, 'n');
  await expectError(client.completions.create({ model: 'm', prompt: 'x', frequency_penalty: 1 }), 400, 'frequency_penalty');
  await expectError(client.chat.completions.create({ model: 'm', messages: [] }), 400, 'messages');
  await expectError(client.completions.create({ model: 'm', prompt: 'x', lazy: { prune: 'nonsense' } }), 400, 'lazy.prune');
  await expectError(client.completions.create({ model: 'm', prompt: 'word '.repeat(5000) }), 400, 'prompt');
  const anonymous = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await expectError(anonymous.models.list(), 401, null);
  // Still serving after all that.
  const ok = await client.completions.create({ model: 'm', prompt: 'x', max_tokens: 1 });
  assert.ok(ok.usage.total_tokens > 0);
});
