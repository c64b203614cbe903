#include "runtime/cpu/cpu_batch.h"

#include <algorithm>
#include <string>

#include "util/thread_pool.h"

namespace lazyllm {

CpuBatch::CpuBatch(const Model& model, ThreadPool& pool) : model_(model), pool_(pool), ops_(model, pool) {}

void CpuBatch::check(std::span<const BackendStep> steps) const {
  std::vector<const ForwardBackend*> seen;
  for (size_t i = 0; i < steps.size(); ++i) {
    const BackendStep& st = steps[i];
    const std::string which = "batch step: sequence " + std::to_string(i);
    const auto* cpu = dynamic_cast<const CpuForward*>(st.sequence);
    if (!cpu) throw Error(which + " is not computed by this batch's CPU backend");
    if (&cpu->model() != &model_ || &cpu->pool() != &pool_)
      throw Error(which + " belongs to another model or batch");
    if (!st.schedule) throw Error(which + " has no schedule");
    if (std::find(seen.begin(), seen.end(), st.sequence) != seen.end()) throw Error(which + " is listed twice");
    seen.push_back(st.sequence);
    if (cpu->matmul_precision() != cpu_precision_of(steps))
      throw Error(which + " uses another matmul precision than the step's first sequence");
    if (st.prefill) {
      cpu->check_prefill(st.tokens);
    } else {
      if (st.tokens.size() != 1) throw Error(which + ": a decode step takes exactly one token");
      cpu->check_decode(st.tokens[0]);
    }
  }
}

MatmulPrecision CpuBatch::cpu_precision_of(std::span<const BackendStep> steps) {
  const auto* cpu = steps.empty() ? nullptr : dynamic_cast<const CpuForward*>(steps[0].sequence);
  return cpu ? cpu->matmul_precision() : MatmulPrecision::kF32;
}

void CpuBatch::run(std::span<const BackendStep> steps) {
  if (steps.empty()) return;
  const ModelConfig& c = model_.config();
  const int d = c.n_embd, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  const int n = static_cast<int>(steps.size());
  seqs_.clear();
  for (const BackendStep& st : steps) seqs_.push_back(static_cast<CpuForward*>(st.sequence));
  ops_.set_precision(seqs_[0]->matmul_precision());
  try {
    for (int i = 0; i < n; ++i) {
      if (steps[i].prefill) seqs_[i]->begin_prefill(steps[i].tokens, *steps[i].schedule);
      else seqs_[i]->begin_decode(steps[i].tokens[0], *steps[i].schedule);
    }
    rows_.resize(n);
    for (int l = 0; l < c.n_layers; ++l) {
      // Each sequence plans its layer; their rows are concatenated, in step order.
      int total = 0;
      for (int i = 0; i < n; ++i) total += (rows_[i] = seqs_[i]->layer_rows(l)).m;
      h_.resize(static_cast<size_t>(total) * d);
      pos_.resize(total);
      for (int i = 0, off = 0; i < n; off += rows_[i].m, ++i) {
        std::copy(rows_[i].h, rows_[i].h + int64_t{rows_[i].m} * d, h_.data() + int64_t{off} * d);
        std::copy(rows_[i].pos, rows_[i].pos + rows_[i].m, pos_.data() + off);
      }
      ops_.pre_attention(l, h_.data(), total, pos_.data());
      float* att = ops_.att_buffer(total);
      for (int i = 0, off = 0; i < n; off += rows_[i].m, ++i)
        seqs_[i]->attend(l, ops_.q() + int64_t{off} * qd, ops_.k() + int64_t{off} * kvd, ops_.v() + int64_t{off} * kvd,
                         att + int64_t{off} * qd);
      ops_.post_attention(l, h_.data(), total, att);
      for (int i = 0, off = 0; i < n; off += rows_[i].m, ++i) {
        std::copy(h_.data() + int64_t{off} * d, h_.data() + int64_t{off + rows_[i].m} * d, rows_[i].h);
        seqs_[i]->end_layer(l);
      }
    }
    // One logits product for the last row of every sequence.
    final_.resize(static_cast<size_t>(n) * d);
    for (int i = 0; i < n; ++i) std::copy(seqs_[i]->final_row(), seqs_[i]->final_row() + d, final_.data() + int64_t{i} * d);
    logits_.resize(static_cast<size_t>(n) * c.n_vocab);
    ops_.logits(final_.data(), n, logits_.data());
    for (int i = 0; i < n; ++i) {
      std::copy(logits_.data() + int64_t{i} * c.n_vocab, logits_.data() + int64_t{i + 1} * c.n_vocab,
                seqs_[i]->logits_buffer());
      seqs_[i]->end_step();
    }
  } catch (...) {
    for (CpuForward* s : seqs_) s->abandon_step();
    throw;
  }
}

}  // namespace lazyllm
