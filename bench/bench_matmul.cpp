// Micro-benchmark of matmul for every weight type on TinyLlama-like shapes.
//
// Built by CMake as build/lazyllm_bench_matmul.
// Run: build/lazyllm_bench_matmul [threads=2] [types=all, e.g. q4_0,f32]
//      build/lazyllm_bench_matmul triad [threads=2]   (memory bandwidth, one JSON line)
//
// Decode (n = 1..16; the Fast columns take the 8-bit path where the type has one, as `run` and
// `bench` do) cycles through enough copies of each matrix to exceed the last-level
// cache, so GB/s is the rate weights stream from DRAM, as in a real forward pass.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "kernels/cpu/dot_kernels.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant.h"
#include "util/thread_pool.h"

using namespace lazyllm;

namespace {

struct Shape {
  int64_t rows, cols;
};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<uint8_t> random_matrix(DType t, const Shape& s, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> row(s.cols);
  std::vector<uint8_t> out(row_bytes(t, s.cols) * s.rows);
  for (int64_t r = 0; r < s.rows; ++r) {
    for (auto& v : row) v = nd(rng);
    quantize_row(t, row.data(), out.data() + r * row_bytes(t, s.cols), s.cols);
  }
  return out;
}

// Runs fn repeatedly for at least `min_s` seconds; returns the best seconds per call over
// a few rounds.
template <class F>
double time_best(F&& fn, double min_s = 0.25) {
  fn();  // warm up (and size scratch buffers)
  double best = 1e30;
  for (int round = 0; round < 3; ++round) {
    int calls = 0;
    const double t0 = now_s();
    double t;
    do {
      fn();
      ++calls;
      t = now_s() - t0;
    } while (t < min_s);
    best = std::min(best, t / calls);
  }
  return best;
}

// STREAM's triad, a[i] = b[i] + s * c[i], over arrays far larger than the last-level cache,
// split across the pool's threads in contiguous chunks. Counts 3 x 4 bytes per element (two
// reads, one write; write-allocate traffic not counted, as STREAM does). Then a read-only pass
// (integer sums of b's bits), the traffic of decode, which only reads weights. Best of 10 passes.
int run_triad(int threads) {
  constexpr int64_t kN = 64LL << 20;  // 256 MiB per array
  std::vector<float> a(kN), b(kN, 1.0f), c(kN, 2.0f);
  ThreadPool pool(threads);
  const int64_t chunks = 64 * threads;
  auto pass = [&] {
    pool.parallel_for(chunks, [&](int64_t i, int) {
      const int64_t lo = kN * i / chunks, hi = kN * (i + 1) / chunks;
      for (int64_t j = lo; j < hi; ++j) a[j] = b[j] + 3.0f * c[j];
    });
  };
  pass();
  double best = 1e30;
  for (int r = 0; r < 10; ++r) {
    const double t0 = now_s();
    pass();
    best = std::min(best, now_s() - t0);
  }
  const double gbs = 3.0 * 4.0 * kN / best / 1e9;
  // The read pass sums 64-bit words into four independent accumulators, so that even baseline
  // x86-64 code (two 16-byte adds a cycle) is bound by memory, not by the adds.
  std::vector<uint64_t> sums(static_cast<size_t>(chunks));
  const auto* words = reinterpret_cast<const uint64_t*>(b.data());
  const int64_t n_words = kN / 2;
  auto read_pass = [&] {
    pool.parallel_for(chunks, [&](int64_t i, int) {
      const int64_t lo = n_words * i / chunks / 4 * 4, hi = n_words * (i + 1) / chunks / 4 * 4;
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (int64_t j = lo; j < hi; j += 4) a0 += words[j], a1 += words[j + 1], a2 += words[j + 2], a3 += words[j + 3];
      sums[static_cast<size_t>(i)] = a0 + a1 + a2 + a3;
    });
  };
  read_pass();
  double best_read = 1e30;
  for (int r = 0; r < 10; ++r) {
    const double t0 = now_s();
    read_pass();
    best_read = std::min(best_read, now_s() - t0);
  }
  const double read_gbs = 4.0 * kN / best_read / 1e9;
  std::printf("{\"bench\": \"triad\", \"threads\": %d, \"triad_gb_s\": %.2f, \"read_gb_s\": %.2f, \"check\": %.1f}\n",
              threads, gbs, read_gbs, static_cast<double>(a[kN / 2]) + static_cast<double>(sums[0] % 7));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // show rows as they finish
  if (argc > 1 && std::string(argv[1]) == "triad") return run_triad(argc > 2 ? std::atoi(argv[2]) : 2);
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  std::vector<DType> types = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  if (argc > 2) {
    types.clear();
    std::string list = argv[2];
    for (size_t p = 0; p <= list.size();) {
      const size_t e = std::min(list.find(',', p), list.size());
      if (auto t = parse_dtype(list.substr(p, e - p))) types.push_back(*t);
      p = e + 1;
    }
  }
  const std::vector<Shape> shapes = {{2048, 2048}, {5632, 2048}, {2048, 5632}};
  ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::printf("threads %d, SIMD target %s\n", threads, kernels::simd_target_name());
  std::printf("%-5s %-11s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "type", "rows x cols", "pf GF/s", "pfFast",
              "n1 GB/s", "n1Fast", "n1 GF/s", "n4 GF/s", "n8 GF/s", "n16 GF/s", "n2Fast GB", "n4Fast GB", "n8Fast GB");
  for (DType t : types) {
    double tot_flops_pf = 0, tot_t_pf = 0, tot_bytes = 0, tot_t_dec = 0;
    for (const Shape& s : shapes) {
      const int64_t bytes = row_bytes(t, s.cols) * s.rows;
      const int copies = static_cast<int>(std::max<int64_t>(1, (256LL << 20) / bytes));
      std::vector<std::vector<uint8_t>> w;
      w.push_back(random_matrix(t, s, rng));
      for (int c = 1; c < copies; ++c) w.push_back(w[0]);
      const int64_t nmax = 512;
      std::vector<float> x(nmax * s.cols), y(nmax * s.rows);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (auto& v : x) v = nd(rng);
      int cur = 0;
      auto run = [&](int64_t n, MatmulPrecision prec = MatmulPrecision::kF32) {
        const WeightView v{t, w[cur].data(), s.rows, s.cols};
        cur = (cur + 1) % copies;
        matmul(v, x.data(), n, s.cols, y.data(), s.rows, pool, prec);
      };
      const double flops1 = 2.0 * s.rows * s.cols;
      const double t_pf = time_best([&] { run(512); }, 0.5);
      const double t_pf_fast = time_best([&] { run(512, MatmulPrecision::kFast); }, 0.5);
      const double t_1 = time_best([&] { run(1); });
      const double t_1_fast = time_best([&] { run(1, MatmulPrecision::kFast); });
      const double t_4 = time_best([&] { run(4); });
      const double t_8 = time_best([&] { run(8); });
      const double t_16 = time_best([&] { run(16); });
      // Decode steps of a few rows (batched requests, LazyLLM's revived rows) on the fast path.
      const double t_2f = time_best([&] { run(2, MatmulPrecision::kFast); });
      const double t_4f = time_best([&] { run(4, MatmulPrecision::kFast); });
      const double t_8f = time_best([&] { run(8, MatmulPrecision::kFast); });
      tot_flops_pf += 512 * flops1;
      tot_t_pf += t_pf;
      tot_bytes += bytes;
      tot_t_dec += t_1;
      std::printf("%-5s %5lldx%-5lld %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n",
                  dtype_name(t).data(), static_cast<long long>(s.rows), static_cast<long long>(s.cols),
                  512 * flops1 / t_pf / 1e9, 512 * flops1 / t_pf_fast / 1e9, bytes / t_1 / 1e9, bytes / t_1_fast / 1e9,
                  flops1 / t_1 / 1e9, 4 * flops1 / t_4 / 1e9, 8 * flops1 / t_8 / 1e9, 16 * flops1 / t_16 / 1e9,
                  bytes / t_2f / 1e9, bytes / t_4f / 1e9, bytes / t_8f / 1e9);
    }
    std::printf("%-5s %-11s %9.1f %9.1f   (all three shapes)\n", dtype_name(t).data(), "total", tot_flops_pf / tot_t_pf / 1e9,
                tot_bytes / tot_t_dec / 1e9);
  }
  return 0;
}
