"""Copy-task sweep (eval/runs/run-sanity-copy-gpu.log): does a model of this shape learn the copy
(induction) task with the copy loss alone? Usage, on the GPU, from a folder holding this file and
the other tools/evalmodel sources: python3 copy_sweep.py VARIANT LEN LR LAYERS D STEPS, where VARIANT
is bf16 (autocast + SDPA) or fp32manual (float32, plain attention). The logged run started 8 at once
with LEN 128 and 1500 STEPS."""
import sys, time, torch, random, torch.nn.functional as F
import train as TR, model as M
variant = sys.argv[1]; L = int(sys.argv[2]); lr = float(sys.argv[3]); NL = int(sys.argv[4]); D = int(sys.argv[5]); STEPS = int(sys.argv[6])
torch.set_num_threads(2)
torch.manual_seed(0)
TR._init_worker(); voc = TR._vocab
dev = torch.device('cuda')
cfg = M.Config(n_vocab=len(voc), d=D, n_layers=NL, n_heads=D//32, n_kv_heads=2, n_ff=768, ctx=4096)
if 'manual' in variant:
    M.F = type('FF', (), {k: getattr(F, k) for k in ('silu', 'cross_entropy')})  # hide SDPA
m = M.Llama(cfg).to(dev)
opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9,0.95), weight_decay=0.1, fused=True)
amp = 'bf16' in variant
t0 = time.time(); out = []
for step in range(1, STEPS + 1):
    raw, n_prompt, n_total, fam, width = TR.make_batch(1, step, L, 64 * L, [0], 1.0)
    ids = torch.frombuffer(raw, dtype=torch.int32).view(-1, width).long().to(dev)
    is_copy = torch.tensor([f == TR.COPY for f in fam.tolist()], device=dev)
    with torch.autocast('cuda', dtype=torch.bfloat16, enabled=amp):
        a, c, cp, right, _ = TR.batch_loss(m, ids, torch.tensor(n_prompt.tolist(), device=dev), torch.tensor(n_total.tolist(), device=dev), is_copy, dev)
    opt.zero_grad(); cp.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if step % 100 == 0: out.append(f"{step}:{cp.item():.2f}/{int(right.sum())}")
print(variant, L, lr, NL, D, f"{time.time()-t0:.0f}s", " ".join(out), flush=True)
