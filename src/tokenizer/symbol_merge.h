// What both merging tokenizers (spm.cpp, bpe.cpp) do to their doubly linked list of symbols
// (spans of the text with prev/next indices) when a merge joins two neighbours.
#pragma once

#include <vector>

namespace lazyllm {

// Symbol `right` (left's next) joins `left`: left spans both, right becomes empty.
template <typename Sym>
void merge_symbols(std::vector<Sym>& sym, int left, int right) {
  Sym &L = sym[left], &R = sym[right];
  L.len += R.len;
  R.len = 0;
  L.next = R.next;
  if (R.next >= 0) sym[R.next].prev = left;
}

}  // namespace lazyllm
