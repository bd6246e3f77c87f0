#include "huffman.h"

#include <algorithm>
#include <vector>

#include "check.h"

namespace slimrt {
namespace {

// A package-merge item: its weight and how many times each symbol occurs inside it.
struct Item {
  uint64_t weight;
  std::vector<uint8_t> occurrences;  // indexed like the sorted leaf list
};

}  // namespace

CodeLengths build_code_lengths(const SymbolCounts& counts, int max_length) {
  SLIMRT_CHECK(max_length >= 1 && max_length <= 16,
               "max code length must be in [1, 16], got " << max_length);
  CodeLengths lengths{};
  std::vector<int> symbols;
  for (int s = 0; s < 256; ++s) {
    if (counts[s] > 0) symbols.push_back(s);
  }
  const int m = static_cast<int>(symbols.size());
  if (m == 0) return lengths;
  if (m == 1) {
    lengths[symbols[0]] = 1;
    return lengths;
  }
  int needed = 0;
  while ((1 << needed) < m) ++needed;
  const int limit = std::max(max_length, needed);

  // Ties broken by symbol value so the code depends only on the histogram.
  std::stable_sort(symbols.begin(), symbols.end(),
                   [&](int a, int b) { return counts[a] < counts[b]; });
  std::vector<Item> leaves(m);
  for (int i = 0; i < m; ++i) {
    leaves[i].weight = counts[symbols[i]];
    leaves[i].occurrences.assign(m, 0);
    leaves[i].occurrences[i] = 1;
  }
  std::vector<Item> list = leaves;
  for (int level = 1; level < limit; ++level) {
    std::vector<Item> packages;
    packages.reserve(list.size() / 2);
    for (size_t i = 0; i + 1 < list.size(); i += 2) {
      Item p{list[i].weight + list[i + 1].weight, list[i].occurrences};
      for (int k = 0; k < m; ++k) p.occurrences[k] += list[i + 1].occurrences[k];
      packages.push_back(std::move(p));
    }
    std::vector<Item> merged;
    merged.reserve(leaves.size() + packages.size());
    size_t a = 0, b = 0;
    while (a < leaves.size() || b < packages.size()) {
      if (b == packages.size() || (a < leaves.size() && leaves[a].weight <= packages[b].weight)) {
        merged.push_back(leaves[a++]);
      } else {
        merged.push_back(std::move(packages[b++]));
      }
    }
    list = std::move(merged);
  }
  for (int i = 0; i < 2 * m - 2; ++i) {
    for (int k = 0; k < m; ++k) lengths[symbols[k]] += list[i].occurrences[k];
  }
  return lengths;
}

std::array<uint16_t, 256> canonical_codes(const CodeLengths& lengths) {
  std::array<uint16_t, 256> codes{};
  std::vector<int> order;
  for (int s = 0; s < 256; ++s) {
    if (lengths[s] > 0) order.push_back(s);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return lengths[a] < lengths[b]; });
  uint32_t code = 0;
  int previous = order.empty() ? 0 : lengths[order[0]];
  for (int s : order) {
    code <<= (lengths[s] - previous);
    previous = lengths[s];
    codes[s] = static_cast<uint16_t>(code);
    ++code;
  }
  return codes;
}

}  // namespace slimrt
