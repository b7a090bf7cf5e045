#include "worker/gcl/train/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"

// The format stores little-endian bytes; the tensor memory is copied as is.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes little endian");

namespace gcl::core {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference reader's limit

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64},   {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
    {"I16", torch::kInt16},     {"I8", torch::kInt8},     {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

const char* DtypeName(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return nullptr;
}

bool DtypeFromName(const std::string& name, torch::ScalarType* t) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      *t = d.type;
      return true;
    }
  }
  return false;
}

absl::Status ErrnoStatus(const std::string& what, int err) {
  const std::string msg = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace

absl::Status WriteFileAtomic(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create " + tmp, errno);
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(what, err);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync " + tmp);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("close " + tmp, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("rename " + tmp + " -> " + path, err);
  }
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoStatus("open directory " + dir, errno);
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return ErrnoStatus("fsync directory " + dir, err);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open " + path, errno);
  struct stat st;
  std::string out;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return absl::DataLossError("read error on " + path + ": " + std::strerror(err));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::StatusOr<std::string> SerializeSafetensors(
    const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      absl::StrAppend(&header, JsonQuote(k), ":", JsonQuote(v));
    }
    header += "}";
  }
  std::set<std::string> seen;
  std::vector<torch::Tensor> host;
  host.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__" || !seen.insert(name).second) {
      return absl::InvalidArgumentError("safetensors: empty, reserved or duplicate name \"" + name +
                                        "\"");
    }
    if (!t.defined())
      return absl::InvalidArgumentError("safetensors: tensor \"" + name + "\" is undefined");
    const char* dtype = DtypeName(t.scalar_type());
    if (dtype == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor \"", name,
                                                     "\" has unsupported dtype ",
                                                     std::string(c10::toString(t.scalar_type()))));
    }
    host.push_back(t.detach().to(torch::kCPU).contiguous());
    const uint64_t nbytes = host.back().nbytes();
    if (header.size() > 1) header += ",";
    header += JsonQuote(name);
    header += absl::StrCat(":{\"dtype\":\"", dtype, "\",\"shape\":[");
    for (int64_t d = 0; d < t.dim(); ++d) header += absl::StrCat(d ? "," : "", t.size(d));
    header += absl::StrCat("],\"data_offsets\":[", offset, ",", offset + nbytes, "]}");
    offset += nbytes;
  }
  header += "}";
  // Pad with spaces so the data starts 8-byte aligned (as the reference writer).
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header.size() + offset);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  out += header;
  for (const auto& h : host) out.append(static_cast<const char*>(h.data_ptr()), h.nbytes());
  return out;
}

absl::StatusOr<ParsedSafetensors> ParseSafetensors(std::string_view bytes,
                                                   const std::string& source) {
  auto bad = [&](const std::string& why) {
    return absl::DataLossError(source + ": invalid safetensors file: " + why);
  };
  if (bytes.size() < 8) return bad("shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > kMaxHeaderBytes || n > bytes.size() - 8) {
    return bad(absl::StrCat("header length ", n, " exceeds the file (", bytes.size(), " bytes)"));
  }
  const std::string_view data = bytes.substr(8 + n);
  absl::StatusOr<JsonValue> parsed =
      ParseJson(bytes.substr(8, n), source + ": invalid safetensors file: header");
  if (!parsed.ok()) return absl::DataLossError(parsed.status().message());
  const JsonValue& root = *parsed;
  if (!root.is_object()) return bad("header is not a JSON object");

  ParsedSafetensors out;
  struct Entry {
    std::string name;
    torch::ScalarType type;
    std::vector<int64_t> shape;
    int64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [key, v] : root.fields()) {
    if (key == "__metadata__") {
      if (!v.is_object()) return bad("__metadata__ is not an object");
      for (const auto& [mkey, mvalue] : v.fields()) {
        if (!mvalue.is_string()) return bad("metadata value of \"" + mkey + "\" is not a string");
        out.metadata[mkey] = mvalue.string_value();
      }
      continue;
    }
    if (!v.is_object()) return bad("entry \"" + key + "\" is not an object");
    const JsonValue* dtype = v.Find("dtype");
    const JsonValue* shape = v.Find("shape");
    const JsonValue* offsets = v.Find("data_offsets");
    Entry e{key, torch::kFloat32, {}, 0, 0};
    if (dtype == nullptr || !dtype->is_string() || !DtypeFromName(dtype->string_value(), &e.type)) {
      return bad("entry \"" + key + "\" has a missing or unsupported dtype");
    }
    if (shape == nullptr || !shape->is_array()) return bad("entry \"" + key + "\" has no shape");
    int64_t numel = 1;
    for (const JsonValue& d : shape->items()) {
      if (!d.is_integer() || d.int_value() < 0 || d.int_value() > (int64_t{1} << 40)) {
        return bad("entry \"" + key + "\" has a bad shape");
      }
      e.shape.push_back(d.int_value());
      numel *= d.int_value();
      if (numel > (int64_t{1} << 40)) return bad("entry \"" + key + "\" is too large");
    }
    if (offsets == nullptr || !offsets->is_array() || offsets->items().size() != 2 ||
        !offsets->items()[0].is_integer() || !offsets->items()[1].is_integer()) {
      return bad("entry \"" + key + "\" has bad data_offsets");
    }
    e.begin = offsets->items()[0].int_value();
    e.end = offsets->items()[1].int_value();
    const int64_t want = numel * static_cast<int64_t>(c10::elementSize(e.type));
    if (e.begin < 0 || e.end < e.begin || e.end - e.begin != want) {
      return bad(absl::StrCat("entry \"", key, "\" spans [", e.begin, ", ", e.end, ") but needs ",
                              want, " bytes"));
    }
    if (static_cast<uint64_t>(e.end) > data.size()) {
      return bad(absl::StrCat("entry \"", key, "\" ends at byte ", e.end, " of a ", data.size(),
                              "-byte data section (truncated?)"));
    }
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  int64_t pos = 0;
  for (const Entry& e : entries) {
    if (e.begin != pos) return bad("data ranges overlap or leave a gap at \"" + e.name + "\"");
    pos = e.end;
  }
  if (static_cast<uint64_t>(pos) != data.size()) {
    return bad(absl::StrCat("data section has ", data.size(), " bytes, entries cover ", pos));
  }
  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.type));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), data.data() + e.begin, e.end - e.begin);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::string bytes;
  GCL_RETURN_IF_ERROR(CatchToStatus("WriteSafetensors " + path, [&]() -> absl::Status {
    GCL_ASSIGN_OR_RETURN(bytes, SerializeSafetensors(tensors, metadata));
    return absl::OkStatus();
  }));
  return WriteFileAtomic(path, bytes);
}

absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path) {
  GCL_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  GCL_ASSIGN_OR_RETURN(ParsedSafetensors parsed, ParseSafetensors(bytes, path));
  return std::move(parsed.tensors);
}

}  // namespace gcl::core
