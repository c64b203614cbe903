"""Next-token pretraining of the code model on the corpus of corpus.py: no attention
supervision, no pruning in the loop, no task data. A Llama model (tools/evalmodel/model.py, tied
embeddings) reads random windows of `--ctx` tokens from the packed training split (files in
corpus order, so files of one package stand next to each other), with AdamW, bf16 autocast on
the GPU, warmup then cosine decay over the whole planned run.

A run may span several invocations (one per GPU call): `--state DIR` holds the weights, the
optimizer and the step; each invocation trains for `--budget-s` seconds of its share of
`--total-steps`, saves, and writes the GGUF. Token ids are cached beside the state
(`tokens-<split>.u16`) so later invocations skip tokenization while the files survive.

Example (one H200; see README.md):
  python3 train_lm.py --corpus /tmp/lazyllm-corpus/corpus --spm code-bpe-8192.model \\
      --state /tmp/codemodel-state --gguf code-llama-12l.gguf --budget-s 540 --total-steps 4000
"""
import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "evalmodel"))
sys.path.insert(0, HERE)
import docformat as D  # noqa: E402
import gguf_vocab  # noqa: E402
import model as M  # noqa: E402  (tools/evalmodel/model.py)

_sp = None


def _init_tokenizer(spm_path):
    global _sp
    from spm_import import sentencepiece
    _sp = sentencepiece().SentencePieceProcessor(model_file=spm_path)


def _encode(texts):
    return [np.asarray(ids, dtype=np.uint16) for ids in _sp.encode(texts)]


def tokenize_split(paths, spm_path, cache, workers):
    """The split's token ids, packed in corpus order. One package is one stream, <s> files </s>,
    each file as the task prompts show it (its `<|file|> PACKAGE/PATH` header line, then its
    text), so a repobench-style prompt (several files of a package, then the one to complete) is
    what training showed. A newline is a byte piece, so no token spans two files and encoding
    files one by one equals encoding the stream."""
    if os.path.exists(cache):
        return np.memmap(cache, dtype=np.uint16, mode="r")
    packages, texts = [], []
    for p in sorted(paths):
        for package, rel, text in D.read_docs(p):
            packages.append(package)
            texts.append(D.file_header(f"{package}/{rel}") + text)
    chunks = [texts[i:i + 256] for i in range(0, len(texts), 256)]
    with ProcessPoolExecutor(workers, initializer=_init_tokenizer, initargs=(spm_path,)) as ex:
        encoded = [ids for part in ex.map(_encode, chunks) for ids in part]
    _init_tokenizer(spm_path)
    bos, eos = np.array([_sp.bos_id()], np.uint16), np.array([_sp.eos_id()], np.uint16)
    stream = []
    for i, ids in enumerate(encoded):
        if i == 0 or packages[i] != packages[i - 1]:
            if i:
                stream.append(eos)
            stream.append(bos)
        stream.append(ids)
    if encoded:
        stream.append(eos)
    ids = np.concatenate(stream) if stream else np.zeros(0, np.uint16)
    tmp = cache + ".part"
    ids.tofile(tmp)
    os.replace(tmp, cache)
    return np.memmap(cache, dtype=np.uint16, mode="r")


class _GgufVocab:
    """What model.to_gguf asks of a vocabulary: its tokenizer.ggml.* keys."""

    def __init__(self, sp):
        self.sp = sp

    def write_metadata(self, w):
        gguf_vocab.write_metadata(w, self.sp)


def batch(ids, rng, n_seq, ctx, device):
    starts = rng.integers(0, len(ids) - ctx - 1, size=n_seq)
    x = np.stack([np.asarray(ids[s:s + ctx + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(x).to(device, non_blocking=True)
    return t[:, :-1], t[:, 1:]


def lr_at(step, progress, peak, warmup):
    """Linear warmup over `warmup` steps, then cosine decay to a tenth as `progress` (the share of
    the planned run done, by steps or by time) goes from its value at the end of warmup to 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def save(model, opt, sp, a, step, tokens_seen, train_s, log):
    """state.pt (resume) and the GGUF, each written under a temporary name then renamed, so a
    reader never sees half a file."""
    ckpt = os.path.join(a.state, "state.pt")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "tokens": tokens_seen,
                "train_s": train_s}, ckpt + ".part")
    os.replace(ckpt + ".part", ckpt)
    M.to_gguf(model, _GgufVocab(sp), a.gguf + ".part", a.name)
    os.replace(a.gguf + ".part", a.gguf)
    log(f"saved step {step} ({tokens_seen} tokens, {train_s:.0f}s trained): {a.gguf} "
        f"({os.path.getsize(a.gguf) / 2**20:.1f} MiB)")


@torch.no_grad()
def val_loss(model, ids, ctx, device, n_batches=8, n_seq=8):
    rng = np.random.default_rng(0)  # the same windows every time
    model.eval()
    total = 0.0
    for _ in range(n_batches):
        x, y = batch(ids, rng, n_seq, ctx, device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
    model.train()
    return total / n_batches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus.py's shards (train-*.txt.xz; calib-*.txt.xz for validation)")
    ap.add_argument("--spm", required=True, help="the SentencePiece model of train_tokenizer.py")
    ap.add_argument("--state", required=True, help="folder of the run's state (created; resumed when present)")
    ap.add_argument("--gguf", required=True, help="GGUF written at the end of each invocation")
    ap.add_argument("--name", default="code-llama")
    ap.add_argument("--budget-s", type=float, default=540)
    ap.add_argument("--total-steps", type=int, default=4000, help="steps of the whole run (the lr schedule)")
    ap.add_argument("--plan-s", type=float, default=0,
                    help="seconds of training in the whole run: the lr schedule follows elapsed training time "
                         "as well as steps (whichever is further), and the run ends when either is spent")
    ap.add_argument("--save-every-s", type=float, default=0, help="also save state and GGUF this often")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--seqs", type=int, default=32, help="sequences of --ctx tokens per step")
    ap.add_argument("--micro", type=int, default=8, help="sequences per forward (gradient accumulation)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--val-every", type=int, default=500)
    a = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(a.state, exist_ok=True)
    logf = open(os.path.join(a.state, "train.log"), "a")

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    t0 = time.time()
    shards = sorted(os.listdir(a.corpus))
    train_ids = tokenize_split([os.path.join(a.corpus, s) for s in shards if s.startswith("train-")], a.spm,
                               os.path.join(a.state, "tokens-train.u16"), a.workers)
    val_ids = tokenize_split([os.path.join(a.corpus, s) for s in shards if s.startswith("calib-")], a.spm,
                             os.path.join(a.state, "tokens-calib.u16"), a.workers)
    log(f"tokens: train {len(train_ids)}, validation {len(val_ids)} ({time.time() - t0:.0f}s)")

    from spm_import import sentencepiece
    sp = sentencepiece().SentencePieceProcessor(model_file=a.spm)
    cfg = M.Config(n_vocab=sp.get_piece_size(), d=a.d, n_layers=a.layers, n_heads=a.heads, n_kv_heads=a.kv_heads,
                   n_ff=a.ff, ctx=a.ctx)
    torch.manual_seed(a.seed)
    model = M.Llama(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if device.type == "cuda" else {}))
    step, tokens_seen, train_s = 0, 0, 0.0
    ckpt = os.path.join(a.state, "state.pt")
    if os.path.exists(ckpt):
        st = torch.load(ckpt, map_location=device)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, tokens_seen, train_s = st["step"], st["tokens"], st.get("train_s", 0.0)
        log(f"resumed at step {step} ({tokens_seen} tokens, {train_s:.0f}s trained)")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {json.dumps(cfg.__dict__)}, {n_params / 1e6:.1f} M parameters, device {device}")
    fwd = torch.compile(model) if a.compile else model

    rng = np.random.default_rng(a.seed + step)  # a resumed run draws new windows
    assert a.seqs % a.micro == 0, "--seqs must be a multiple of --micro"
    def progress():
        by_steps = (step - a.warmup) / max(1, a.total_steps - a.warmup)
        by_time = train_s / a.plan_s if a.plan_s > 0 else 0.0
        return max(by_steps, by_time)

    t_train = time.time()
    t_saved = t_train
    while step < a.total_steps and progress() < 1.0 and time.time() - t_train < a.budget_s:
        t_step = time.time()
        lr = lr_at(step, progress(), a.lr, a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(a.seqs // a.micro):
            x, y = batch(train_ids, rng, a.micro, a.ctx, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = fwd(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)) / (a.seqs // a.micro)
            loss.backward()
            loss_sum += loss.item()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        step += 1
        tokens_seen += a.seqs * a.ctx
        train_s += time.time() - t_step
        if step % a.log_every == 0 or step == 1:
            el = time.time() - t_train
            log(f"step {step} lr {lr:.2e} loss {loss_sum:.4f} gnorm {gn:.2f} tokens {tokens_seen} elapsed {el:.0f}s")
        if step % a.val_every == 0:
            log(f"step {step} validation loss {val_loss(model, val_ids, a.ctx, device):.4f}")
        if a.save_every_s > 0 and time.time() - t_saved >= a.save_every_s:
            save(model, opt, sp, a, step, tokens_seen, train_s, log)
            t_saved = time.time()
    log(f"stopped at step {step} of {a.total_steps} ({train_s:.0f}s trained, planned {a.plan_s:.0f}s); "
        f"validation loss {val_loss(model, val_ids, a.ctx, device):.4f}")
    save(model, opt, sp, a, step, tokens_seen, train_s, log)
    log(f"done in {time.time() - t0:.0f}s total")

if __name__ == "__main__":
    main()
