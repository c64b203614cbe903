#!/usr/bin/env python3
"""Bounded load on an OpenAI-compatible completions server: CLIENTS concurrent streaming clients
share REQUESTS requests, each a prompt of PROMPT_WORDS words (a random text; with --shared-prefix F,
a fraction F of the prompts start with the same PREFIX_WORDS words, the others with as many words
of their own) and max_tokens answers.
Prints one JSON summary: aggregate output tokens/s (streamed text events over the whole run),
median and p90 time to first token as the client sees it (request sent to first text event),
split into the prompts that share the prefix and the others when a prefix is shared, and the count of requests that failed
(an error status, or an error event in the stream) or came back malformed (any such request makes the exit status 1).
With --usage the requests ask for the stream's usage chunk (stream_options.include_usage), and the
summary adds the medians of the server's own usage.ttft_ms and usage.queue_ms (lazyllm's extensions:
arrival to first token, and to the start of the request's first forward) where the server sends them.

The same script drives lazyllm serve and any other OpenAI-compatible server, so two servers on
the same model file are compared under one load. Python's standard library only.

  python3 scripts/serve_load.py --url http://127.0.0.1:8080 --clients 32 --requests 96 \
      --prompt-words 1000-3000 --max-tokens 128
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse


def words(rng, n):
    # Plain lower-case words: a few tokens each for any of the usual tokenizers.
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7))) for _ in range(n))


def make_prompts(args):
    rng = random.Random(args.seed)
    lo, hi = (int(x) for x in args.prompt_words.split("-")) if "-" in args.prompt_words else (int(args.prompt_words),) * 2
    prefix = words(rng, args.prefix_words) if args.shared_prefix > 0 else ""
    prompts = []
    for _ in range(args.requests):
        body = words(rng, rng.randint(lo, hi))
        if args.shared_prefix <= 0:
            prompts.append((body, False))
            continue
        # The others get a prefix of their own of the same length: a cold prompt of the same size.
        hit = rng.random() < args.shared_prefix
        prompts.append(((prefix if hit else words(rng, args.prefix_words)) + " " + body, hit))
    return prompts


def pct(v, p):
    if not v:
        return None
    s = sorted(v)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 1)


def one(args, prompt, extra):
    """One streamed completion: (ms to the first text event, text events, the usage chunk or {})."""
    u = urllib.parse.urlparse(args.url)
    body = {"model": "m", "prompt": prompt, "max_tokens": args.max_tokens, "stream": True, "temperature": 0}
    if args.usage:
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=args.timeout)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/completions", json.dumps(body),
                     {"Content-Type": "application/json", "Authorization": "Bearer " + args.api_key})
        r = conn.getresponse()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}: {r.read()[:200]!r}")
        ttft, events, finished, usage = None, 0, False, {}
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                finished = True
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"error event: {json.dumps(event['error'])[:200]}")
            usage = event.get("usage") or usage
            choices = event.get("choices") or []
            if choices and choices[0].get("text"):
                events += 1
                if ttft is None:
                    ttft = (time.perf_counter() - t0) * 1000
        if not finished or ttft is None:
            raise RuntimeError("stream ended without [DONE] or without text")
        return ttft, events, usage
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--api-key", default="none")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--prompt-words", default="1000-3000", help="N or LO-HI words per prompt")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--shared-prefix", type=float, default=0.0, help="fraction of prompts that share a prefix")
    ap.add_argument("--prefix-words", type=int, default=3000)
    ap.add_argument("--extra", default="{}", help="JSON merged into every request body (e.g. a lazy schedule)")
    ap.add_argument("--warmup", type=int, default=2, help="short requests sent alone before the measured run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600, help="seconds a request may take")
    ap.add_argument("--usage", action="store_true", help="ask for usage; summarise the server's ttft_ms and queue_ms")
    ap.add_argument("--per-request", help="write one JSON line per answered request here (shared, client ttft, usage)")
    args = ap.parse_args()
    extra = json.loads(args.extra)
    prompts = make_prompts(args)
    for i in range(args.warmup):  # with a shared prefix, the first warm-up request brings it
        first_shared = next((p for p, hit in prompts if hit), None)
        one(args, first_shared if i == 0 and first_shared else prompts[i % len(prompts)][0][:2000], extra)
    lock = threading.Lock()
    queue = list(prompts)
    ttft_hit, ttft_miss, errors = [], [], []
    server = {True: {"ttft_ms": [], "queue_ms": []}, False: {"ttft_ms": [], "queue_ms": []}}
    records = []
    tokens = 0

    def client():
        nonlocal tokens
        while True:
            with lock:
                if not queue:
                    return
                prompt, hit = queue.pop(0)
            try:
                t, n, usage = one(args, prompt, extra)
                with lock:
                    (ttft_hit if hit else ttft_miss).append(t)
                    tokens += n
                    records.append({"shared": hit, "ttft_ms": round(t, 2), "t_done_s": round(time.perf_counter() - t0, 3),
                                    "usage": usage})
                    for k, v in server[hit].items():
                        if isinstance(usage.get(k), (int, float)):
                            v.append(usage[k])
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(str(e)[:200])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    every = ttft_hit + ttft_miss
    out = {
        "url": args.url, "clients": args.clients, "requests": args.requests, "answered": len(every),
        "failed": len(errors), "errors": errors[:5], "prompt_words": args.prompt_words, "max_tokens": args.max_tokens,
        "wall_s": round(wall, 2), "output_tokens": tokens, "output_tok_s": round(tokens / wall, 1),
        "ttft_ms_median": pct(every, 50), "ttft_ms_p90": pct(every, 90),
    }
    if args.shared_prefix > 0:
        out.update({"shared_prefix_requests": len(ttft_hit), "ttft_ms_median_shared": pct(ttft_hit, 50),
                    "ttft_ms_median_own_prefix": pct(ttft_miss, 50)})
    if args.per_request:
        with open(args.per_request, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    for k in ("ttft_ms", "queue_ms"):
        every_k = server[True][k] + server[False][k]
        if every_k:
            out[f"server_{k}_median"] = pct(every_k, 50)
            if args.shared_prefix > 0:
                out[f"server_{k}_median_shared"] = pct(server[True][k], 50)
                out[f"server_{k}_median_own_prefix"] = pct(server[False][k], 50)
    print(json.dumps(out))
    return 0 if not errors and len(every) == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
