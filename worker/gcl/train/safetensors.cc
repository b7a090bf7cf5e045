#include "worker/gcl/train/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
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

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));  // UTF-8 passes through
        }
    }
  }
  out->push_back('"');
}

// A minimal JSON reader: enough for safetensors headers (objects, arrays,
// strings with escapes, integers), strict about syntax, depth-limited.
struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  bool is_int = false;
  int64_t integer = 0;
  std::string str;
  std::vector<Json> items;        // kArray values, kObject values
  std::vector<std::string> keys;  // kObject keys (same order as items)
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}

  bool Parse(Json* out) {
    if (!Value(out, 0)) return false;
    SkipWs();
    return pos_ == s_.size();
  }
  const std::string& error() const { return error_; }

 private:
  bool Fail(const std::string& what) {
    if (error_.empty()) error_ = what + " at byte " + std::to_string(pos_);
    return false;
  }
  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool Literal(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) != lit) return Fail("bad literal");
    pos_ += lit.size();
    return true;
  }
  bool Value(Json* v, int depth) {
    if (depth > 64) return Fail("nesting too deep");
    SkipWs();
    if (pos_ >= s_.size()) return Fail("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return Object(v, depth);
    if (c == '[') return Array(v, depth);
    if (c == '"') {
      v->kind = Json::kString;
      return String(&v->str);
    }
    if (c == 't') {
      v->kind = Json::kBool;
      v->boolean = true;
      return Literal("true");
    }
    if (c == 'f') {
      v->kind = Json::kBool;
      v->boolean = false;
      return Literal("false");
    }
    if (c == 'n') {
      v->kind = Json::kNull;
      return Literal("null");
    }
    return Number(v);
  }
  bool Object(Json* v, int depth) {
    v->kind = Json::kObject;
    ++pos_;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      SkipWs();
      std::string key;
      if (pos_ >= s_.size() || s_[pos_] != '"') return Fail("expected a key");
      if (!String(&key)) return false;
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
      ++pos_;
      Json item;
      if (!Value(&item, depth + 1)) return false;
      v->keys.push_back(std::move(key));
      v->items.push_back(std::move(item));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or '}'");
    }
  }
  bool Array(Json* v, int depth) {
    v->kind = Json::kArray;
    ++pos_;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      Json item;
      if (!Value(&item, depth + 1)) return false;
      v->items.push_back(std::move(item));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or ']'");
    }
  }
  bool Hex4(uint32_t* cp) {
    if (pos_ + 4 > s_.size()) return Fail("short \\u escape");
    *cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      *cp <<= 4;
      if (h >= '0' && h <= '9')
        *cp |= h - '0';
      else if (h >= 'a' && h <= 'f')
        *cp |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        *cp |= h - 'A' + 10;
      else
        return Fail("bad \\u escape");
    }
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool String(std::string* out) {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      const unsigned char c = s_[pos_++];
      if (c == '"') return true;
      if (c < 0x20) return Fail("control character in string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (pos_ >= s_.size()) break;
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            uint32_t lo = 0;
            if (!Hex4(&lo)) return false;
            if (lo < 0xDC00 || lo >= 0xE000) return Fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Fail("bad escape");
      }
    }
    return Fail("unterminated string");
  }
  bool Number(Json* v) {
    const size_t start = pos_;
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c >= '0' && c <= '9') {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        integral = false;
        ++pos_;
      } else {
        break;
      }
    }
    const std::string tok(s_.substr(start, pos_ - start));
    if (tok.empty() || tok == "-") return Fail("expected a value");
    v->kind = Json::kNumber;
    char* end = nullptr;
    errno = 0;
    if (integral) {
      v->integer = std::strtoll(tok.c_str(), &end, 10);
      v->is_int = errno == 0;
    } else {
      std::strtod(tok.c_str(), &end);
    }
    if (end != tok.c_str() + tok.size()) return Fail("bad number");
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

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
      AppendJsonString(k, &header);
      header += ":";
      AppendJsonString(v, &header);
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
    AppendJsonString(name, &header);
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
  Json root;
  JsonParser parser(bytes.substr(8, n));
  if (!parser.Parse(&root)) return bad("header JSON: " + parser.error());
  if (root.kind != Json::kObject) return bad("header is not a JSON object");

  ParsedSafetensors out;
  struct Entry {
    std::string name;
    torch::ScalarType type;
    std::vector<int64_t> shape;
    int64_t begin, end;
  };
  std::vector<Entry> entries;
  for (size_t i = 0; i < root.keys.size(); ++i) {
    const std::string& key = root.keys[i];
    const Json& v = root.items[i];
    if (key == "__metadata__") {
      if (v.kind != Json::kObject) return bad("__metadata__ is not an object");
      for (size_t j = 0; j < v.keys.size(); ++j) {
        if (v.items[j].kind != Json::kString)
          return bad("metadata value of \"" + v.keys[j] + "\" is not a string");
        out.metadata[v.keys[j]] = v.items[j].str;
      }
      continue;
    }
    if (v.kind != Json::kObject) return bad("entry \"" + key + "\" is not an object");
    const Json *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
    for (size_t j = 0; j < v.keys.size(); ++j) {
      if (v.keys[j] == "dtype") dtype = &v.items[j];
      if (v.keys[j] == "shape") shape = &v.items[j];
      if (v.keys[j] == "data_offsets") offsets = &v.items[j];
    }
    Entry e{key, torch::kFloat32, {}, 0, 0};
    if (dtype == nullptr || dtype->kind != Json::kString || !DtypeFromName(dtype->str, &e.type)) {
      return bad("entry \"" + key + "\" has a missing or unsupported dtype");
    }
    if (shape == nullptr || shape->kind != Json::kArray)
      return bad("entry \"" + key + "\" has no shape");
    int64_t numel = 1;
    for (const Json& d : shape->items) {
      if (d.kind != Json::kNumber || !d.is_int || d.integer < 0 || d.integer > (int64_t{1} << 40)) {
        return bad("entry \"" + key + "\" has a bad shape");
      }
      e.shape.push_back(d.integer);
      numel *= d.integer;
      if (numel > (int64_t{1} << 40)) return bad("entry \"" + key + "\" is too large");
    }
    if (offsets == nullptr || offsets->kind != Json::kArray || offsets->items.size() != 2 ||
        !offsets->items[0].is_int || !offsets->items[1].is_int) {
      return bad("entry \"" + key + "\" has bad data_offsets");
    }
    e.begin = offsets->items[0].integer;
    e.end = offsets->items[1].integer;
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
