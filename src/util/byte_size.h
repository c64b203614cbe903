// Memory sizes as users write them on the command line: "40G", "512MiB", "1.5GB", "1073741824".
#pragma once

#include <cstdint>
#include <string_view>

namespace lazyllm {

// Bytes of `text`: a number (fraction allowed) with an optional unit K, M, G or T, binary
// (1K = 1024), followed by nothing, "B" or "iB", in either case. Throws Error naming `what`
// for anything else, for zero, and for sizes past 2^60.
int64_t parse_byte_size(std::string_view text, std::string_view what);

}  // namespace lazyllm
