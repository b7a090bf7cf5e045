// Counter-based seeds: every random stream of a run is a pure function of
// (run seed, stream, index), so a resumed run redraws exactly what the
// uninterrupted run would have drawn without saving any generator state.
#pragma once

#include <cstdint>

namespace gcl::core {

// Named streams; values are part of the reproducibility contract.
enum class RngStream : uint64_t {
  kSampler = 1,
  kAugment = 2,
  kPartners = 3,
  kMitigator = 4,
  kInit = 5,
  kFinetune = 6,
  kSynthetic = 7,
};

// SplitMix64 finaliser: a bijective mix with good avalanche.
inline uint64_t MixSeed(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline uint64_t StreamSeed(uint64_t seed, RngStream stream, uint64_t index) {
  return MixSeed(MixSeed(seed ^ (static_cast<uint64_t>(stream) << 56)) + index);
}

}  // namespace gcl::core
