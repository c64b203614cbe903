// What a session will hold on its device, estimated on the host before anything is allocated
// (estimate_memory in lazyllm.h), and the check made with it before a GPU session allocates.
// The formulas follow how each backend sizes its buffers (runtime/cpu/cpu_forward.cpp,
// runtime/cuda/cuda_forward_pass.cpp); the tests compare them with what the backends hold.
#pragma once

#include <cstdint>
#include <string>

#include "lazyllm/lazyllm.h"

namespace lazyllm {

// The empty string when `need` fits in `free_bytes` of device memory; otherwise a one-line
// message naming what it needs, what is free, and what would make it fit (a shorter context,
// the GPU weights in their native form). weights_resident: the model's weights are already on
// the device (placed there for an earlier Session of the same Model), so only the rest must fit.
std::string memory_shortfall(const Model& model, const SessionOptions& options, int64_t free_bytes,
                             bool weights_resident);

}  // namespace lazyllm
