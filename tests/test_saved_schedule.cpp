// The calibrated schedule saved beside a model: written and read back field for field, and
// every way it can be unusable (missing, corrupt, another format, another model file, another
// depth, a bad or ablation schedule) reported, never thrown or crashed on.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "prune/saved_schedule.h"
#include "test_util.h"

namespace lazyllm {
namespace {

namespace fs = std::filesystem;

struct SavedScheduleFile : ::testing::Test {
  // Any file stands in for the model: only its size and bytes identify it.
  std::string model = test::temp_path("saved-model.gguf").string();
  std::string path = saved_schedule_path(model);

  void SetUp() override {
    std::ofstream(model, std::ios::binary) << std::string(3 << 20, 'a') << "tail";
    fs::remove(path);
  }

  SavedSchedule sample() {
    SavedSchedule s;
    s.schedule = "2:0.4,4:0.4";
    s.n_layers = 6;
    set_model_identity(s, model);
    s.data_file = "calib.jsonl";
    s.data_bytes = 1234;
    s.data_hash = "00112233aabbccdd";
    s.samples = 32;
    s.score = 79.5;
    s.baseline_score = 80.25;
    s.speedup = 1.75;
    s.computed_fraction = 0.45;
    s.goal = "fastest within 1 point of the baseline";
    s.device = "cpu";
    s.date = "2025-01-02T03:04:05Z";
    return s;
  }
};

TEST_F(SavedScheduleFile, RoundTrip) {
  EXPECT_EQ(path, model + ".lazy.json");
  const SavedSchedule s = sample();
  EXPECT_EQ(s.model_file, "saved-model.gguf");
  EXPECT_EQ(s.model_bytes, (3 << 20) + 4);
  write_saved_schedule(path, s);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const SavedSchedule r = read_saved_schedule(path);
  EXPECT_EQ(r.schedule, s.schedule);
  EXPECT_EQ(r.n_layers, s.n_layers);
  EXPECT_EQ(r.model_file, s.model_file);
  EXPECT_EQ(r.model_bytes, s.model_bytes);
  EXPECT_EQ(r.model_hash, s.model_hash);
  EXPECT_EQ(r.data_file, s.data_file);
  EXPECT_EQ(r.data_bytes, s.data_bytes);
  EXPECT_EQ(r.data_hash, s.data_hash);
  EXPECT_EQ(r.samples, s.samples);
  EXPECT_EQ(r.score, s.score);
  EXPECT_EQ(r.baseline_score, s.baseline_score);
  EXPECT_EQ(r.speedup, s.speedup);
  EXPECT_EQ(r.computed_fraction, s.computed_fraction);
  EXPECT_EQ(r.goal, s.goal);
  EXPECT_EQ(r.device, s.device);
  EXPECT_EQ(r.date, s.date);

  const SavedScheduleLookup found = find_saved_schedule(model, 6);
  ASSERT_TRUE(found.saved) << found.problem;
  EXPECT_TRUE(found.problem.empty());
  EXPECT_EQ(found.schedule.to_string(), "2:0.4,4:0.4");
}

TEST_F(SavedScheduleFile, NoneBesideTheModel) {
  const SavedScheduleLookup found = find_saved_schedule(model, 6);
  EXPECT_FALSE(found.exists());
  EXPECT_TRUE(found.schedule.empty());
  EXPECT_EQ(found.path, path);
}

TEST_F(SavedScheduleFile, AChangedModelFileIsNoticed) {
  write_saved_schedule(path, sample());
  // Same size, one byte changed in the last MiB.
  {
    std::fstream f(model, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(-2, std::ios::end);
    f.put('X');
  }
  auto found = find_saved_schedule(model, 6);
  EXPECT_FALSE(found.saved);
  EXPECT_TRUE(found.schedule.empty());
  EXPECT_NE(found.problem.find("another model file"), std::string::npos) << found.problem;
  // Another size.
  std::ofstream(model, std::ios::binary | std::ios::app) << "more";
  found = find_saved_schedule(model, 6);
  EXPECT_NE(found.problem.find("another model file"), std::string::npos) << found.problem;
}

TEST_F(SavedScheduleFile, AnotherDepthOrABadScheduleIsReported) {
  write_saved_schedule(path, sample());
  auto found = find_saved_schedule(model, 8);
  EXPECT_FALSE(found.saved);
  EXPECT_NE(found.problem.find("6 layers"), std::string::npos) << found.problem;
  for (const char* bad : {"9:0.5", "2:1.5", "", "static:2:0.5"}) {
    SavedSchedule s = sample();
    s.schedule = bad;
    write_saved_schedule(path, s);
    found = find_saved_schedule(model, 6);
    EXPECT_FALSE(found.saved) << bad;
    EXPECT_TRUE(found.schedule.empty()) << bad;
    EXPECT_FALSE(found.problem.empty()) << bad;
  }
}

TEST_F(SavedScheduleFile, CorruptFilesAreReportedNotThrown) {
  const char* bad[] = {"", "{", "[1,2]", "{\"format\": \"lazyllm-schedule/1\"}",
                       "{\"format\": \"something-else/9\", \"schedule\": \"2:0.5\"}", "\xff\xfe garbage"};
  for (const char* text : bad) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    SavedScheduleLookup found;
    ASSERT_NO_THROW(found = find_saved_schedule(model, 6)) << text;
    EXPECT_TRUE(found.exists()) << text;
    EXPECT_FALSE(found.saved) << text;
    EXPECT_NE(found.problem.find(path), std::string::npos) << found.problem;
    EXPECT_THROW(read_saved_schedule(path), Error) << text;
  }
  // A field of the wrong type.
  write_saved_schedule(path, sample());
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  text.replace(text.find("\"samples\": 32"), 13, "\"samples\": \"x\"");
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  EXPECT_NE(find_saved_schedule(model, 6).problem.find("not a saved schedule"), std::string::npos);
}

TEST_F(SavedScheduleFile, WritingWhereItCannotIsAnError) {
  EXPECT_THROW(write_saved_schedule("/nonexistent-dir/x.lazy.json", sample()), Error);
}

}  // namespace
}  // namespace lazyllm
