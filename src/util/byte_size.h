// Memory sizes as users write them on the command line ("40G", "512MiB", "1.5GB", "1073741824")
// and as messages print them ("12.3 GiB").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lazyllm {

// Bytes of `text`: a number (fraction allowed) with an optional unit K, M, G or T, binary
// (1K = 1024), followed by nothing, "B" or "iB", in either case. Throws Error naming `what`
// for anything else, for zero, and for sizes past 2^60.
int64_t parse_byte_size(std::string_view text, std::string_view what);

// "12.3 GiB" (for messages and reports).
std::string format_gib(int64_t bytes);
// format_gib from 1 GiB up, "20.0 MiB" below.
std::string format_size(int64_t bytes);

}  // namespace lazyllm
