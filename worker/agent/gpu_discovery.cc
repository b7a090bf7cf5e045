#include "worker/agent/gpu_discovery.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gcl/base/status_macros.h"

namespace gcl::agent {
namespace {

absl::Status BadLine(absl::string_view command, int line_no, absl::string_view line,
                     absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(command, ": line ", line_no, " \"", line, "\": ", why));
}
absl::Status BadLine(int line_no, absl::string_view line, absl::string_view why) {
  return BadLine(kNvidiaSmiQuery, line_no, line, why);
}

// "3g.20gb" -> 20 GiB; 0 when the profile names no size.
int64_t MigProfileBytes(absl::string_view profile) {
  const size_t gb = profile.find("gb");
  size_t start = gb;
  while (start != absl::string_view::npos && start > 0 && absl::ascii_isdigit(profile[start - 1])) {
    --start;
  }
  int64_t gib = 0;
  if (gb == absl::string_view::npos || !absl::SimpleAtoi(profile.substr(start, gb - start), &gib)) {
    return 0;
  }
  return gib << 30;
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
    if (fields.size() < 5) {
      return BadLine(line_no, line,
                     "expected 5 fields: index, uuid, name, memory.total, mig.mode.current");
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
    std::vector<absl::string_view> name(fields.begin() + 2, fields.end() - 2);
    gpu.name = absl::StrJoin(name, ", ");
    if (gpu.name.empty()) return BadLine(line_no, line, "empty name");
    const absl::string_view mig = fields.back();
    gpu.mig_enabled = mig == "Enabled";
    if (!gpu.mig_enabled && mig != "Disabled" && !Unknown(mig)) {
      return BadLine(line_no, line, "mig.mode.current is not Enabled, Disabled or [N/A]");
    }
    const absl::string_view mem = fields[fields.size() - 2];
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

std::string DeviceId(const GpuInfo& gpu) {
  return gpu.mig_device < 0 ? absl::StrCat("cuda:", gpu.index)
                            : absl::StrCat("cuda:", gpu.index, "/mig", gpu.mig_device);
}

std::string CudaPin(const GpuInfo& gpu) {
  return gpu.mig_device < 0 ? absl::StrCat(gpu.index) : gpu.mig_uuid;
}

absl::StatusOr<std::vector<GpuInfo>> ApplyMigInstances(std::vector<GpuInfo> gpus,
                                                       absl::string_view list_output) {
  std::map<int, std::vector<GpuInfo>> instances;  // by GPU index
  const GpuInfo* parent = nullptr;
  int header = -1;  // the index of the last "GPU <n>:" line
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(list_output, '\n')) {
    ++line_no;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    const size_t colon = line.find(':');
    int index = -1;
    if (absl::StartsWith(line, "GPU ") && colon != absl::string_view::npos &&
        absl::SimpleAtoi(line.substr(4, colon - 4), &index)) {
      header = index;
      parent = nullptr;
      for (const GpuInfo& g : gpus) {
        if (g.index == index) parent = &g;
      }
      continue;
    }
    if (!absl::StartsWith(line, "MIG ")) continue;
    auto bad = [&](absl::string_view why) { return BadLine(kNvidiaSmiList, line_no, line, why); };
    if (parent == nullptr) {
      return bad(header < 0
                     ? std::string("a MIG instance before any GPU line")
                     : absl::StrCat("GPU ", header, " is not in the output of ", kNvidiaSmiQuery));
    }
    // "MIG 3g.20gb     Device  0: (UUID: MIG-...)"
    const size_t device = line.find("Device");
    const size_t uuid = line.find("UUID: ");
    GpuInfo mig = *parent;
    if (device == absl::string_view::npos || colon == absl::string_view::npos || colon < device ||
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(device + 6, colon - device - 6)),
                          &mig.mig_device) ||
        mig.mig_device < 0) {
      return bad("no \"Device <number>:\"");
    }
    if (uuid == absl::string_view::npos || line.compare(uuid + 6, 4, "MIG-") != 0) {
      return bad("no \"UUID: MIG-...\"");
    }
    const absl::string_view rest = line.substr(uuid + 6);
    mig.mig_uuid = std::string(rest.substr(0, rest.find(')')));
    const absl::string_view profile = absl::StripAsciiWhitespace(line.substr(4, device - 4));
    mig.name = absl::StrCat(parent->name, " MIG ", profile);
    mig.memory_bytes = MigProfileBytes(profile);
    instances[parent->index].push_back(std::move(mig));
  }
  std::vector<GpuInfo> out;
  for (GpuInfo& g : gpus) {
    auto it = instances.find(g.index);
    if (it == instances.end()) {
      out.push_back(std::move(g));
    } else {
      for (GpuInfo& m : it->second) out.push_back(std::move(m));
    }
  }
  return out;
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
  // allowed[i]: gpus[i] (a whole GPU or one MIG instance) may be offered.
  std::vector<bool> allowed(gpus.size(), visible == nullptr);
  if (visible != nullptr) {
    for (absl::string_view raw : absl::StrSplit(visible, ',')) {
      const absl::string_view entry = absl::StripAsciiWhitespace(raw);
      int index = 0;
      if (entry.empty()) break;
      if (absl::SimpleAtoi(entry, &index)) {
        if (index < 0) break;  // CUDA hides every device from here on
        bool listed = false;
        for (size_t i = 0; i < gpus.size(); ++i) {
          if (gpus[i].index == index) allowed[i] = listed = true;
        }
        if (!listed) {
          return absl::InvalidArgumentError(absl::StrCat(
              "CUDA_VISIBLE_DEVICES=", visible, ": index ", index, " is not listed by nvidia-smi"));
        }
        continue;
      }
      // A uuid or a unique prefix of one ("GPU-8f2a", "MIG-4d1f"); a GPU's
      // uuid selects all its MIG instances.
      const bool mig = absl::StartsWith(entry, "MIG-");
      std::set<std::string> matched;
      for (const GpuInfo& g : gpus) {
        const std::string& id = mig ? g.mig_uuid : g.uuid;
        if (!id.empty() && absl::StartsWith(id, entry)) matched.insert(id);
      }
      if (matched.size() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "CUDA_VISIBLE_DEVICES=", visible, ": \"", entry, "\" ",
            matched.empty() ? (mig ? "names no MIG instance nvidia-smi -L lists"
                                   : "names no GPU nvidia-smi lists")
                            : (mig ? "matches several MIG instances" : "matches several GPUs")));
      }
      for (size_t i = 0; i < gpus.size(); ++i) {
        if ((mig ? gpus[i].mig_uuid : gpus[i].uuid) == *matched.begin()) allowed[i] = true;
      }
    }
  }
  std::vector<GpuInfo> out;
  if (request.mode == GpuRequest::Mode::kList) {
    for (int index : request.indices) {
      bool listed = false, visible_any = false;
      for (size_t i = 0; i < gpus.size(); ++i) {
        if (gpus[i].index != index) continue;
        listed = true;
        if (!allowed[i]) continue;
        visible_any = true;
        out.push_back(gpus[i]);
      }
      if (!listed) {
        return absl::InvalidArgumentError(
            absl::StrCat("--gpus: GPU ", index, " is not listed by nvidia-smi"));
      }
      if (!visible_any) {
        return absl::InvalidArgumentError(absl::StrCat("--gpus: GPU ", index,
                                                       " is hidden by CUDA_VISIBLE_DEVICES=",
                                                       visible == nullptr ? "" : visible));
      }
    }
    return out;
  }
  for (size_t i = 0; i < gpus.size(); ++i) {
    if (allowed[i]) out.push_back(std::move(gpus[i]));
  }
  return out;
}

std::vector<gcl::v1::Device> ToDevices(const std::vector<GpuInfo>& gpus) {
  std::vector<gcl::v1::Device> out;
  for (const GpuInfo& g : gpus) {
    gcl::v1::Device d;
    d.set_id(DeviceId(g));
    d.set_type(gcl::v1::DEVICE_TYPE_CUDA);
    d.set_name(g.name);
    d.set_memory_bytes(g.memory_bytes);
    out.push_back(std::move(d));
  }
  return out;
}

namespace {

struct SmiRun {
  int status = -1;  // pclose()'s; -1: could not be run
  std::string out, err;
};

SmiRun RunNvidiaSmi(const std::string& binary, const std::string& args, int timeout_s) {
  SmiRun r;
  // stderr goes to a file: a warning there must not be parsed as a GPU.
  char err_path[] = "/tmp/gcl-nvidia-smi-XXXXXX";
  const int err_fd = ::mkstemp(err_path);
  if (err_fd < 0) {
    r.err = "cannot create a temporary file for its stderr";
    return r;
  }
  ::close(err_fd);
  // coreutils' timeout: SIGKILL after timeout_s, exit status 137.
  const std::string command = absl::StrCat("timeout -s KILL ", timeout_s, " ", ShellQuote(binary),
                                           " ", args, " 2>", ShellQuote(err_path));
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) r.out.append(buf, n);
    r.status = ::pclose(pipe);
  }
  std::stringstream err;
  err << std::ifstream(err_path).rdbuf();
  r.err += err.str();
  ::unlink(err_path);
  return r;
}

// Why a run with a non-zero status failed, naming the command.
absl::Status RunError(const std::string& binary, absl::string_view what, const SmiRun& r,
                      int timeout_s) {
  if (r.status != -1 && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 137) {
    return absl::DeadlineExceededError(absl::StrCat(binary, " (", what, ") did not answer within ",
                                                    timeout_s, " s (a hung driver?)"));
  }
  const std::string why = !FirstLine(r.err).empty() ? FirstLine(r.err) : FirstLine(r.out);
  const std::string how = r.status == -1 ? "could not be run"
                          : WIFEXITED(r.status)
                              ? absl::StrCat("exited with code ", WEXITSTATUS(r.status))
                              : "was killed by a signal";
  return absl::FailedPreconditionError(
      absl::StrCat(binary, " (", what, ") ", how, why.empty() ? "" : ": ", why));
}

}  // namespace

absl::StatusOr<std::vector<GpuInfo>> QueryNvidiaSmi(bool* found, int timeout_s) {
  const std::string binary = FindOnPath("nvidia-smi");
  if (found != nullptr) *found = !binary.empty();
  if (binary.empty()) return std::vector<GpuInfo>();
  const SmiRun query = RunNvidiaSmi(
      binary, absl::StrCat(kNvidiaSmiQueryArgs, " --format=csv,noheader,nounits"), timeout_s);
  // A driver without GPUs says so and exits non-zero: that is no GPUs.
  if (query.status != 0 && absl::StrContains(query.out + query.err, "No devices were found")) {
    return std::vector<GpuInfo>();
  }
  if (query.status != 0) return RunError(binary, kNvidiaSmiQuery, query, timeout_s);
  GCL_ASSIGN_OR_RETURN(std::vector<GpuInfo> gpus, ParseNvidiaSmiOutput(query.out));
  if (gpus.empty()) return gpus;
  const SmiRun list = RunNvidiaSmi(binary, "-L", timeout_s);
  if (list.status != 0) return RunError(binary, kNvidiaSmiList, list, timeout_s);
  return ApplyMigInstances(std::move(gpus), list.out);
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
  // CUDA sees no device on a GPU in MIG mode until instances are created.
  std::vector<GpuInfo> usable;
  for (GpuInfo& g : *gpus) {
    if (!g.mig_enabled || g.mig_device >= 0) {
      usable.push_back(std::move(g));
      continue;
    }
    const std::string why = absl::StrCat(
        "GPU ", g.index, " (", g.name, ") is in MIG mode but has no MIG instances, so CUDA cannot "
        "use it: create instances (nvidia-smi mig -i ", g.index, " -cgi <profiles> -C) or turn MIG "
        "off (nvidia-smi -i ", g.index, " -mig 0)");
    if (request.mode == GpuRequest::Mode::kList) return absl::FailedPreconditionError(why);
    log(absl::StrCat(why, "; not offered"));
  }
  *gpus = std::move(usable);
  std::vector<std::string> names;
  for (const GpuInfo& g : *gpus) {
    names.push_back(absl::StrCat(DeviceId(g), " (", g.name, ", ", g.memory_bytes >> 20, " MiB)"));
  }
  log(names.empty() ? std::string("nvidia-smi lists no usable GPU")
                    : absl::StrCat("GPUs: ", absl::StrJoin(names, ", ")));
  return gpus;
}

}  // namespace gcl::agent
