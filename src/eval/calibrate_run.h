// Runs the calibration search (eval/calibrate.h) on a model with the eval harness: the coarse
// grid on a few samples, then the refinement on more, each stage in runs of a few schedules
// with the baseline alongside (its speedups are against the baseline timed with it; a run's
// sessions all hold a KV cache, so the runs stay small).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/calibrate.h"
#include "eval/runner.h"

namespace lazyllm::eval {

struct CalibrateOptions {
  // Model and data paths, context, threads, device, dataset settings. Its schedules, limit,
  // log_path, subset and on_progress are set per run here.
  RunOptions run;
  SearchBudget budget;
  Goal goal;
  int schedules_per_run = 8;  // besides the baseline
  std::string out_dir;        // per-run logs (DIR/coarse/run-N.jsonl, ...) to resume from; empty: none
  // Where TTFT is timed when not where scores are computed (scores on a GPU for a model that will
  // run on CPUs, whose speedups differ): each stage's schedules are run again on this device over
  // `time_samples` of the stage's samples with one generated token (logs DIR/STAGE/time-N.jsonl),
  // and those TTFTs make the speedups. Unset: the scoring runs' own TTFTs.
  std::optional<Device> time_device;
  int time_samples = 16;
  // stage "coarse" or "refine", run k of n, and the eval harness's progress within it.
  std::function<void(const std::string& stage, int run, int runs, const Progress&)> on_progress;
};

struct StageResult {
  int samples = 0;
  Measurement baseline;                  // TTFT: the mean over the stage's runs
  std::vector<Measurement> schedules;    // in the order measured
};

struct Calibration {
  SearchPlan plan;
  std::string timed_on;   // the device whose TTFTs made the speedups
  int timed_samples = 0;  // per stage, when timed apart from the scores (0: the stage's own samples)
  StageResult coarse, refine;
  std::vector<std::string> seeds;  // coarse schedules refined
  std::vector<Measurement> front;  // refinement's Pareto front, baseline included
  Choice choice;                   // made on the refinement's measurements
};

// `samples`: the whole calibration file (the stages take spread subsets of it).
Calibration calibrate(const std::shared_ptr<const Model>& model, const std::vector<Sample>& samples,
                      const CalibrateOptions& o);

}  // namespace lazyllm::eval
