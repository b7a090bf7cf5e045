#include "worker/agent/gpu_discovery.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace gcl::agent {
namespace {

absl::Status BadLine(int line_no, absl::string_view line, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(kNvidiaSmiQuery, ": line ", line_no, " \"", line,
                                                 "\": ", why));
}

// "[N/A]", "[Not Supported]", "N/A": the value is unknown, not malformed.
bool Unknown(absl::string_view v) {
  return v == "N/A" || (v.size() >= 2 && v.front() == '[' && v.back() == ']');
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// The first executable "nvidia-smi" on $PATH; "" when none.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    const std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string FirstLine(const std::string& text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  return std::string(t.substr(0, t.find('\n')));
}

}  // namespace

absl::StatusOr<std::vector<GpuInfo>> ParseNvidiaSmiOutput(absl::string_view output) {
  std::vector<GpuInfo> gpus;
  std::set<int> seen;
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(output, '\n')) {
    ++line_no;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields;
    for (absl::string_view f : absl::StrSplit(line, ',')) {
      fields.push_back(absl::StripAsciiWhitespace(f));
    }
    if (fields.size() < 4) {
      return BadLine(line_no, line, "expected 4 fields: index, uuid, name, memory.total");
    }
    GpuInfo gpu;
    if (!absl::SimpleAtoi(fields[0], &gpu.index) || gpu.index < 0) {
      return BadLine(line_no, line, "index is not an integer >= 0");
    }
    if (!seen.insert(gpu.index).second) {
      return BadLine(line_no, line, absl::StrCat("index ", gpu.index, " listed twice"));
    }
    gpu.uuid = std::string(fields[1]);
    if (!absl::StartsWith(gpu.uuid, "GPU-")) return BadLine(line_no, line, "uuid is not GPU-...");
    // A name may contain commas: everything between the uuid and the memory.
    std::vector<absl::string_view> name(fields.begin() + 2, fields.end() - 1);
    gpu.name = absl::StrJoin(name, ", ");
    if (gpu.name.empty()) return BadLine(line_no, line, "empty name");
    const absl::string_view mem = fields.back();
    int64_t mib = 0;
    if (absl::SimpleAtoi(mem, &mib) && mib >= 0) {
      gpu.memory_bytes = mib * (int64_t{1} << 20);
    } else if (!Unknown(mem)) {
      return BadLine(line_no, line, "memory.total is not a number of MiB");
    }
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

absl::StatusOr<GpuRequest> ParseGpuRequest(absl::string_view flag) {
  GpuRequest r;
  if (flag == "auto") return r;
  if (flag == "none") {
    r.mode = GpuRequest::Mode::kNone;
    return r;
  }
  r.mode = GpuRequest::Mode::kList;
  std::set<int> seen;
  for (absl::string_view item : absl::StrSplit(flag, ',')) {
    int index = -1;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(item), &index) || index < 0 ||
        !seen.insert(index).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gpus ", flag, ": expected auto, none or distinct GPU indices like 0,2"));
    }
    r.indices.push_back(index);
  }
  return r;
}

absl::StatusOr<std::vector<GpuInfo>> SelectGpus(std::vector<GpuInfo> gpus, const GpuRequest& request,
                                                const char* visible) {
  if (request.mode == GpuRequest::Mode::kNone) return std::vector<GpuInfo>();
  std::set<int> allowed;
  for (const GpuInfo& g : gpus) allowed.insert(g.index);
  if (visible != nullptr) {
    allowed.clear();
    for (absl::string_view raw : absl::StrSplit(visible, ',')) {
      const absl::string_view entry = absl::StripAsciiWhitespace(raw);
      int index = 0;
      if (entry.empty()) break;
      if (absl::SimpleAtoi(entry, &index)) {
        if (index < 0) break;  // CUDA hides every device from here on
        bool listed = false;
        for (const GpuInfo& g : gpus) listed = listed || g.index == index;
        if (!listed) {
          return absl::InvalidArgumentError(absl::StrCat(
              "CUDA_VISIBLE_DEVICES=", visible, ": index ", index, " is not listed by nvidia-smi"));
        }
        allowed.insert(index);
        continue;
      }
      // A uuid or a unique prefix of one ("GPU-8f2a").
      const GpuInfo* match = nullptr;
      int matches = 0;
      for (const GpuInfo& g : gpus) {
        if (absl::StartsWith(g.uuid, entry)) {
          match = &g;
          ++matches;
        }
      }
      if (matches != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "CUDA_VISIBLE_DEVICES=", visible, ": \"", entry, "\" ",
            matches == 0 ? "names no GPU nvidia-smi lists (MIG ids cannot be pinned by index)"
                         : "matches several GPUs"));
      }
      allowed.insert(match->index);
    }
  }
  std::vector<GpuInfo> out;
  if (request.mode == GpuRequest::Mode::kList) {
    for (int index : request.indices) {
      const GpuInfo* found = nullptr;
      for (const GpuInfo& g : gpus) {
        if (g.index == index) found = &g;
      }
      if (found == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("--gpus: GPU ", index, " is not listed by nvidia-smi"));
      }
      if (allowed.count(index) == 0) {
        return absl::InvalidArgumentError(absl::StrCat("--gpus: GPU ", index,
                                                       " is hidden by CUDA_VISIBLE_DEVICES=",
                                                       visible == nullptr ? "" : visible));
      }
      out.push_back(*found);
    }
    return out;
  }
  for (GpuInfo& g : gpus) {
    if (allowed.count(g.index) > 0) out.push_back(std::move(g));
  }
  return out;
}

std::vector<gcl::v1::Device> ToDevices(const std::vector<GpuInfo>& gpus) {
  std::vector<gcl::v1::Device> out;
  for (const GpuInfo& g : gpus) {
    gcl::v1::Device d;
    d.set_id(absl::StrCat("cuda:", g.index));
    d.set_type(gcl::v1::DEVICE_TYPE_CUDA);
    d.set_name(g.name);
    d.set_memory_bytes(g.memory_bytes);
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<std::vector<GpuInfo>> QueryNvidiaSmi(bool* found, int timeout_s) {
  const std::string binary = FindOnPath("nvidia-smi");
  if (found != nullptr) *found = !binary.empty();
  if (binary.empty()) return std::vector<GpuInfo>();
  // stderr goes to a file: a warning there must not be parsed as a GPU.
  char err_path[] = "/tmp/gcl-nvidia-smi-XXXXXX";
  const int err_fd = ::mkstemp(err_path);
  if (err_fd < 0) return absl::InternalError("cannot create a temporary file for nvidia-smi");
  ::close(err_fd);
  // coreutils' timeout: SIGKILL after timeout_s, exit status 137.
  const std::string command =
      absl::StrCat("timeout -s KILL ", timeout_s, " ", ShellQuote(binary), " --query-gpu=index,uuid,name,memory.total ",
                   "--format=csv,noheader,nounits 2>", ShellQuote(err_path));
  std::string out;
  int status = -1;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    status = ::pclose(pipe);
  }
  std::stringstream err;
  err << std::ifstream(err_path).rdbuf();
  ::unlink(err_path);
  // A driver without GPUs says so and exits non-zero: that is no GPUs.
  if (status != 0 && absl::StrContains(out + err.str(), "No devices were found")) {
    return std::vector<GpuInfo>();
  }
  if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 137) {
    return absl::DeadlineExceededError(absl::StrCat(binary, " (", kNvidiaSmiQuery,
                                                    ") did not answer within ", timeout_s,
                                                    " s (a hung driver?)"));
  }
  if (status != 0) {
    const std::string why = !FirstLine(err.str()).empty() ? FirstLine(err.str()) : FirstLine(out);
    const std::string how = status == -1                ? "could not be run"
                            : WIFEXITED(status)          ? absl::StrCat("exited with code ",
                                                                        WEXITSTATUS(status))
                                                         : "was killed by a signal";
    return absl::FailedPreconditionError(absl::StrCat(binary, " (", kNvidiaSmiQuery, ") ", how,
                                                      why.empty() ? "" : ": ", why));
  }
  return ParseNvidiaSmiOutput(out);
}

absl::StatusOr<std::vector<GpuInfo>> DiscoverGpus(const GpuRequest& request, const char* visible,
                                                  const std::function<void(const std::string&)>& log) {
  if (request.mode == GpuRequest::Mode::kNone) return std::vector<GpuInfo>();
  bool found = false;
  absl::StatusOr<std::vector<GpuInfo>> all = QueryNvidiaSmi(&found);
  if (!all.ok()) return all.status();
  if (!found) {
    if (request.mode == GpuRequest::Mode::kList) {
      return absl::FailedPreconditionError("--gpus lists GPUs but nvidia-smi is not on PATH");
    }
    log("no nvidia-smi on PATH: no GPUs");
    return all;
  }
  absl::StatusOr<std::vector<GpuInfo>> gpus = SelectGpus(*std::move(all), request, visible);
  if (!gpus.ok()) return gpus.status();
  std::vector<std::string> names;
  for (const GpuInfo& g : *gpus) {
    names.push_back(absl::StrCat("cuda:", g.index, " (", g.name, ", ", g.memory_bytes >> 20, " MiB)"));
  }
  log(names.empty() ? std::string("nvidia-smi lists no usable GPU")
                    : absl::StrCat("GPUs: ", absl::StrJoin(names, ", ")));
  return gpus;
}

}  // namespace gcl::agent
