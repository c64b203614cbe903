// Launchers of the CUDA kernels the forward pass chains (all asynchronous on `stream`).
// Storage types: float, bf16 (weights, GEMM activations) and half (Q, K, V: as the CPU's f16
// KV cache) are passed as uint16_t so this header stays plain C++.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lazyllm::cuda {

using bf16_t = uint16_t;
using half_t = uint16_t;

// Sets the kernels' launch attributes (shared-memory limits) once; called before any CUDA graph
// capture, where such calls do not belong.
void prepare_kernels();

// out[i] = table[tokens[i]] (bf16 rows of d) as float.
void embed_rows(const bf16_t* table, const int32_t* tokens, int n, int d, float* out, cudaStream_t stream);

// out[i] = bf16(x[i] / rms(x[i]) * w) for m rows of d.
void rmsnorm_bf16(const float* x, const float* w, int m, int d, float eps, bf16_t* out, cudaStream_t stream);

// Rows of several sequences in one launch (a decode batch): for row i, its sequence's K/V cache
// and key positions at this layer, the slot its new K/V go to, and how many keys it attends to
// (slots [0, n_keys[i])). Device arrays of one entry per row; unused where k_cache is null.
struct SequenceRows {
  half_t* const* k_cache = nullptr;
  half_t* const* v_cache = nullptr;
  int32_t* const* kpos = nullptr;
  const int32_t* slot = nullptr;
  const int32_t* n_keys = nullptr;
};

// Finishes the fused QKV projection (rows of [q | k | v] in float): adds biases (may be null),
// rotates q and k by each row's position (tables cos/sin[pos * half + i]), writes q (half) and
// stores k, v (half) in cache slots slot0.. with their positions in kpos (or, with seqs, in each
// row's own cache and slot).
struct QkvFinishArgs {
  const float* qkv;
  int m;
  const int32_t* pos;
  const float* bias;  // q | k | v biases, or null
  const float* rope_cos;
  const float* rope_sin;
  int n_heads, n_kv_heads, head_dim;
  bool neox;
  half_t* q;
  half_t* k_cache;
  half_t* v_cache;
  int32_t* kpos;
  int slot0;
  const int32_t* slot0_dev = nullptr;  // when set, the first slot is read from here (decode graphs)
  SequenceRows seqs{};
};
void qkv_finish(const QkvFinishArgs& a, cudaStream_t stream);

// out[i, c] = bf16(silu(gu[i, c]) * gu[i, ff + c]).
void swiglu_bf16(const bf16_t* gu, int m, int ff, bf16_t* out, cudaStream_t stream);

// dst row i = (src_idx[i] >= 0 ? a[src_idx[i]] : b[-src_idx[i] - 1]), rows of d floats;
// dst_idx (may be null = identity) places the row in dst.
void copy_rows(const float* a, const float* b, const int32_t* src_idx, const int32_t* dst_idx, int n, int d,
               float* dst, cudaStream_t stream);

// Rows i < n of k_out / v_out (kvd halves each) and pos_out[i] = the cache's slot slots[i]: listed
// keys made contiguous, so the prefill's attention kernels (TMA tiles) can read them.
void gather_kv(const half_t* k_cache, const half_t* v_cache, const int32_t* kpos, const int32_t* slots, int n,
               int kvd, half_t* k_out, half_t* v_out, int32_t* pos_out, cudaStream_t stream);

// Causal attention of m query rows over a layer's cached keys. A key is visible to a row when
// its position is at most the row's. Keys are either every slot [0, n_keys) (key_slots null)
// or the listed slots.
struct AttentionArgs {
  const half_t* q;  // m rows of n_heads * head_dim
  int m;
  const int32_t* qpos;
  const half_t* k_cache;  // slots of n_kv_heads * head_dim
  const half_t* v_cache;
  const int32_t* kpos;
  const int32_t* key_slots;
  int n_keys;
  // Prefill (key_slots null): slots >= n_old are the m rows themselves, in order, so a block of
  // rows can stop at its last row's slot.
  int n_old;
  int n_heads, n_kv_heads, head_dim;
  float scale;
  bf16_t* out;  // m rows of n_heads * head_dim
  // When set (decode graphs), the number of keys is read from here and n_keys is only the
  // capacity the launch is sized for (the split-key decode kernels, head sizes 16-128).
  const int32_t* n_keys_dev = nullptr;
  // Optional: keys visible to each row (keys and rows both in position order, so a row sees a
  // prefix). A block of rows then stops at its last row's keys instead of scanning every key
  // (decode batches of revived rows spread over the whole prompt). With it, the keys are listed
  // or gathered (gather_kv; key_slots null, every slot [0, n_keys) a key), never the prefill's
  // layout; a tile is masked by position only where it reaches past the first row's keys.
  const int32_t* row_key_end = nullptr;
  // Optional, with row_key_end and key_slots null: the keys are two runs of slots, each in
  // position order, [0, row_key_end[r]) and [run_b, run_b + row_key_end_b[r]) for row r, and
  // n_keys is the slots' extent (run_b + the second run's length). A completing or reviving batch
  // attends to the keys the prefill kept (slots from 0) and to its own rows (slots from run_b)
  // this way, without gathering them into one run first.
  const int32_t* row_key_end_b = nullptr;
  int run_b = 0;
  // When set (decode batches of several sequences; the decode kernel, head sizes 16-128): each
  // row's own caches and key count, k_cache, v_cache and kpos unused, n_keys the largest count.
  SequenceRows seqs{};
};
// Scratch floats attention() needs for its split-key partial results.
size_t attention_scratch_floats(const AttentionArgs& a);
void attention(const AttentionArgs& a, float* scratch, cudaStream_t stream);

// Whether attention() takes two runs of keys (row_key_end_b) for m rows of this head size: the
// prefill kernels' batches.
bool attention_reads_key_runs(int m, int head_dim);

// Whether attention() can read the key count from a.n_keys_dev (decode graphs) for this head size.
bool attention_reads_key_count(int head_dim);

// LazyLLM importance: the softmax probabilities of query row `row` over the keys (same key set and
// masking as attention), averaged over heads, one per key in key order. scratch:
// importance_scratch_floats(a) floats.
size_t importance_scratch_floats(const AttentionArgs& a);
void last_row_importance(const AttentionArgs& a, int row, float* scratch, float* importance, cudaStream_t stream);

// LazyLLM selection on the GPU (prune/select.h's select_top, same choice): of candidates
// [0, n) keeps the k largest scores, ties to the lower index; row n (the last token) is always
// kept. dest[i], i in [0, n], is row i's index among the kept rows in increasing order, or -1.
// One block; n up to any size (it walks the scores a few times from L2).
void select_top(const float* scores, int n, int k, int32_t* dest, cudaStream_t stream);

// select_top with the candidate count and k read from nk[0], nk[1] (decode graphs).
void select_top_dev(const float* scores, const int32_t* nk, int32_t* dest, cudaStream_t stream);

// A steady LazyLLM decode step (prune/lazy_plan.h's SteadyDecodePlan) on the GPU: after
// select_top_dev over the candidates, the kept keys by position with the new token last, and a
// check that each kept token has K/V down to need_depth (else it would revive: *miss = 1).
struct SteadyKeysArgs {
  const int32_t* keys_in;  // the candidates' positions, or null: candidate i is position i
  const int32_t* dest;     // select_top's output
  const int32_t* nk;       // candidates, kept
  const int32_t* new_pos;
  const int32_t* depth;    // K/V depth by position
  int need_depth;
  int capacity;            // at least the candidates
  int32_t* keys_out;       // kept + 1 positions
  int32_t* miss;
};
void steady_keys(const SteadyKeysArgs& a, cudaStream_t stream);
// out[i] = layer_slots[keys[i]] for the first *n_keys - 1 keys, and *new_slot for the last.
void listed_slots(const int32_t* layer_slots, const int32_t* keys, const int32_t* n_keys, const int32_t* new_slot,
                  int capacity, int32_t* out, cudaStream_t stream);
// The device mirror of the KV index after a steady step: slot_table[l * n_ctx + *pos] = slots[l]
// for every layer, depth[*pos] = n_layers.
void steady_book(int32_t* slot_table, int n_ctx, int n_layers, const int32_t* slots, const int32_t* pos,
                 int32_t* depth, cudaStream_t stream);

// Prefill compaction after select_top: row i of h (rows of d floats) at position pos[i] goes to
// h_out[dest[i]] (and pos_out[dest[i]] = pos[i]) when kept, else to the Aux Cache row aux[pos[i]].
void compact_rows(const float* h, const int32_t* pos, const int32_t* dest, int n, int d, float* h_out,
                  int32_t* pos_out, float* aux, cudaStream_t stream);

}  // namespace lazyllm::cuda
