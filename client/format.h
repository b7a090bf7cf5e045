// Values as gclctl prints them: sizes, durations, short digests, Dice
// cells, job states, and messages as JSON.
#pragma once

#include <cstdint>
#include <string>

#include <google/protobuf/message.h>

#include "gcl/v1/job.pb.h"

namespace gcl::client {

// 1023 -> "1023 B", 1536 -> "1.5 KiB", 3 << 20 -> "3.0 MiB".
std::string HumanBytes(int64_t bytes);
// 42.4 -> "42s", 185 -> "3m05s", 3725 -> "1h02m"; negative -> "0s".
std::string HumanDuration(double seconds);
// The first 12 hex digits of a sha256 (the whole text when shorter).
std::string ShortSha(const std::string& sha256);
// "0.812 ± 0.013 (n=3)"; repeats <= 0 leaves the "(n=...)" out.
std::string DiceCell(double mean, double std, int repeats);
// "HH:MM:SS" in local time of a UTC millisecond timestamp.
std::string ClockTime(int64_t ms);
// JOB_STATE_RUNNING -> "RUNNING".
std::string StateName(gcl::v1::JobState state);

// Protobuf JSON with the .proto field names: indented (a whole reply), or
// on one line (one event of a stream, JSON Lines).
std::string ToJson(const google::protobuf::Message& message);
std::string ToJsonLine(const google::protobuf::Message& message);

}  // namespace gcl::client
