// A calibrated LazyLLM schedule saved beside its model (MODEL.gguf.lazy.json), written by
// `lazyllm calibrate --save` and picked up by `--lazy` in run, bench, eval and serve. It records
// which model file it was calibrated for (size and hash), so a schedule left beside a changed
// model is noticed, and what it was calibrated on and measured to do.
#pragma once

#include <optional>
#include <string>

#include "lazyllm/lazyllm.h"

namespace lazyllm {

struct SavedSchedule {
  std::string schedule;  // as PruneSchedule::to_string() writes it
  int n_layers = 0;      // the depth it was resolved for
  std::string model_file;  // the model's file name (informational)
  int64_t model_bytes = 0;
  std::string model_hash;  // util/file_identity.h: first and last MiB
  std::string data_file;   // the calibration data's file name
  int64_t data_bytes = 0;
  std::string data_hash;  // the whole file
  int samples = 0;        // calibration samples the figures below are means over
  double score = 0, baseline_score = 0;  // 0-100
  double speedup = 0;                    // TTFT, baseline / schedule
  double computed_fraction = 0;
  std::string goal;    // e.g. "max loss 1 point" or "target speedup 1.5x"
  std::string device;  // where the TTFTs were measured
  std::string date;    // UTC, ISO 8601
};

constexpr std::string_view kSavedScheduleFormat = "lazyllm-schedule/1";

// MODEL_PATH + ".lazy.json".
std::string saved_schedule_path(const std::string& model_path);

// Fills model_file/model_bytes/model_hash from the model file. Throws Error if it is unreadable.
void set_model_identity(SavedSchedule& s, const std::string& model_path);

// Writes the file whole or not at all (a temporary beside it, renamed). Throws Error.
void write_saved_schedule(const std::string& path, const SavedSchedule& s);
// Throws Error naming the file when it is unreadable, not JSON, of another format or missing a
// field.
SavedSchedule read_saved_schedule(const std::string& path);

// What `--lazy` finds beside a model.
struct SavedScheduleLookup {
  std::string path;                   // where it looked
  std::optional<SavedSchedule> saved;  // set when a usable schedule was found
  PruneSchedule schedule;              // its schedule, resolved for the model
  std::string problem;                 // why a file that exists cannot be used; empty otherwise
  bool exists() const { return saved.has_value() || !problem.empty(); }
};

// Never throws for a bad file: a corrupt file, one made for another model file (size or hash
// differ) or one whose schedule does not fit `n_layers` gives `problem`, for the caller to warn
// about.
SavedScheduleLookup find_saved_schedule(const std::string& model_path, int n_layers);

}  // namespace lazyllm
