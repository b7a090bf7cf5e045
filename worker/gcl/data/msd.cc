#include "worker/gcl/data/msd.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "worker/gcl/data/nifti_io.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;

// Just enough JSON for dataset.json.
struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type = Type::kNull;
  bool boolean = false;
  double number = 0.0;
  std::string str;
  std::vector<Json> items;                           // kArray
  std::vector<std::pair<std::string, Json>> fields;  // kObject, in file order

  const Json* Find(const std::string& key) const {
    for (const auto& [k, v] : fields)
      if (k == key) return &v;
    return nullptr;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}

  absl::StatusOr<Json> Parse() {
    Json v;
    GCL_RETURN_IF_ERROR(Value(&v, 0));
    SkipWs();
    if (pos_ != s_.size()) return Error("trailing characters");
    return v;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("JSON error at byte ", pos_, ": ", what));
  }
  void SkipWs() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Consume(const char* lit) {
    const size_t n = std::char_traits<char>::length(lit);
    if (s_.compare(pos_, n, lit) != 0) return false;
    pos_ += n;
    return true;
  }

  absl::Status Value(Json* v, int depth) {
    if (depth > 64) return Error("nesting too deep");
    SkipWs();
    if (pos_ >= s_.size()) return Error("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return Object(v, depth);
    if (c == '[') return Array(v, depth);
    if (c == '"') {
      v->type = Json::Type::kString;
      return String(&v->str);
    }
    if (Consume("true")) {
      v->type = Json::Type::kBool;
      v->boolean = true;
      return absl::OkStatus();
    }
    if (Consume("false")) {
      v->type = Json::Type::kBool;
      return absl::OkStatus();
    }
    if (Consume("null")) return absl::OkStatus();
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      const size_t start = pos_;
      while (pos_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) ||
                                  std::strchr("+-.eE", s_[pos_]) != nullptr)) {
        ++pos_;
      }
      try {
        v->number = std::stod(s_.substr(start, pos_ - start));
      } catch (const std::exception&) {
        return Error("bad number");
      }
      v->type = Json::Type::kNumber;
      return absl::OkStatus();
    }
    return Error(absl::StrCat("unexpected character '", std::string(1, c), "'"));
  }

  absl::Status String(std::string* out) {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') return absl::OkStatus();
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) break;
      const char e = s_[pos_++];
      switch (e) {
        case '"': case '\\': case '/': out->push_back(e); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return Error("bad \\u escape");
          unsigned cp = 0;
          for (int i = 0; i < 4; ++i) {
            const char h = s_[pos_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= h - '0';
            else if (h >= 'a' && h <= 'f') cp |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F') cp |= h - 'A' + 10;
            else return Error("bad \\u escape");
          }
          // UTF-8 encode (surrogate pairs are kept as two 3-byte sequences; names only).
          if (cp < 0x80) {
            out->push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          }
          break;
        }
        default: return Error("bad escape");
      }
    }
    return Error("unterminated string");
  }

  absl::Status Array(Json* v, int depth) {
    v->type = Json::Type::kArray;
    ++pos_;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return absl::OkStatus();
    }
    while (true) {
      Json item;
      GCL_RETURN_IF_ERROR(Value(&item, depth + 1));
      v->items.push_back(std::move(item));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return absl::OkStatus();
      }
      return Error("expected ',' or ']'");
    }
  }

  absl::Status Object(Json* v, int depth) {
    v->type = Json::Type::kObject;
    ++pos_;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Error("expected a key string");
      std::string key;
      GCL_RETURN_IF_ERROR(String(&key));
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Error("expected ':'");
      ++pos_;
      Json value;
      GCL_RETURN_IF_ERROR(Value(&value, depth + 1));
      v->fields.emplace_back(std::move(key), std::move(value));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return absl::OkStatus();
      }
      return Error("expected ',' or '}'");
    }
  }

  const std::string& s_;
  size_t pos_ = 0;
};

// {"0": "a", "1": "b"} -> {"a", "b"}; keys must be 0..K-1.
absl::StatusOr<std::vector<std::string>> IndexedNames(const Json& obj, const std::string& what,
                                                      const std::string& path) {
  if (obj.type != Json::Type::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", what, "\" is not an object"));
  }
  std::map<long, std::string> byindex;
  for (const auto& [k, v] : obj.fields) {
    char* end = nullptr;
    const long idx = std::strtol(k.c_str(), &end, 10);
    if (k.empty() || *end != '\0' || idx < 0 || v.type != Json::Type::kString) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", what, "\" key \"", k, "\" is not an index"));
    }
    byindex[idx] = v.str;
  }
  std::vector<std::string> out;
  for (const auto& [idx, name] : byindex) {
    if (idx != static_cast<long>(out.size())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", what, "\" keys are not 0..", byindex.size() - 1));
    }
    out.push_back(name);
  }
  return out;
}

std::string JoinRelative(const fs::path& root, const std::string& rel) {
  fs::path p(rel);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (root / p).lexically_normal().string();
}

}  // namespace

absl::StatusOr<MsdIndex> ReadMsdIndex(const std::string& root) {
  const fs::path json_path = fs::path(root) / "dataset.json";
  const std::string path = json_path.string();
  std::ifstream in(json_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<Json> parsed = JsonParser(text).Parse();
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  const Json& doc = *parsed;
  if (doc.type != Json::Type::kObject) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  MsdIndex index;
  const Json* labels = doc.Find("labels");
  if (labels == nullptr) return absl::InvalidArgumentError(absl::StrCat(path, ": no \"labels\""));
  GCL_ASSIGN_OR_RETURN(index.class_names, IndexedNames(*labels, "labels", path));
  if (const Json* modality = doc.Find("modality"); modality != nullptr) {
    GCL_ASSIGN_OR_RETURN(index.modalities, IndexedNames(*modality, "modality", path));
  }
  const Json* training = doc.Find("training");
  if (training == nullptr || training->type != Json::Type::kArray) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no \"training\" array"));
  }
  for (size_t i = 0; i < training->items.size(); ++i) {
    const Json& entry = training->items[i];
    const Json* image = entry.Find("image");
    if (entry.type != Json::Type::kObject || image == nullptr || image->type != Json::Type::kString) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": training[", i, "] has no \"image\" string"));
    }
    MsdCase c;
    c.image = JoinRelative(root, image->str);
    c.id = NiftiStem(c.image);
    if (const Json* label = entry.Find("label"); label != nullptr && label->type == Json::Type::kString) {
      c.label = JoinRelative(root, label->str);
    }
    index.cases.push_back(std::move(c));
  }
  std::sort(index.cases.begin(), index.cases.end(),
            [](const MsdCase& a, const MsdCase& b) { return a.id < b.id; });
  return index;
}

}  // namespace gcl::core
