#include "server/job.h"

namespace lazyllm::server {

void Job::push_text(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard lock(mu_);
    pending_ += text;
  }
  cv_.notify_all();
}

void Job::finish(GenerationResult result) {
  {
    std::lock_guard lock(mu_);
    result_ = std::move(result);
    done_ = true;
  }
  cv_.notify_all();
}

bool Job::wait(std::string& text, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  text += pending_;
  pending_.clear();
  return done_;
}

bool Job::done() const {
  std::lock_guard lock(mu_);
  return done_;
}

}  // namespace lazyllm::server
