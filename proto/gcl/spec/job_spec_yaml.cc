#include "gcl/spec/job_spec_yaml.h"

// GCC 12 reports a false -Wdangling-pointer inside yaml-cpp 0.7's inlined
// Node::Mark(); silence it for that header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#include <yaml-cpp/yaml.h>
#pragma GCC diagnostic pop

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/job_spec_validate.h"

namespace gcl::spec {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::OneofDescriptor;
using google::protobuf::Reflection;

// "MetaLabel" -> "META_LABEL_": the prefix every value of the enum carries.
std::string EnumPrefix(const EnumDescriptor& type) {
  std::string out;
  for (char c : type.name()) {
    if (std::isupper(static_cast<unsigned char>(c)) && !out.empty()) out.push_back('_');
    out.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
  }
  out.push_back('_');
  return out;
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      return node.Tag() == "!" ? absl::StrCat("the string \"", node.Scalar(), "\"")
                               : absl::StrCat("'", node.Scalar(), "'");
    default:
      return "an undefined value";
  }
}

std::string AllowedValues(const EnumDescriptor& type) {
  std::vector<std::string> names;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() != 0) names.push_back(YamlEnumName(*type.value(i)));
  }
  return absl::StrJoin(names, ", ");
}

std::string AllowedKeys(const Descriptor& type) {
  std::vector<std::string> names;
  for (int i = 0; i < type.field_count(); ++i) names.push_back(type.field(i)->name());
  return absl::StrJoin(names, ", ");
}

std::string Expected(const FieldDescriptor& f) {
  switch (f.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
      return "an integer";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "a non-negative integer";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return "a number";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case FieldDescriptor::CPPTYPE_ENUM:
      return absl::StrCat("one of: ", AllowedValues(*f.enum_type()));
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return "a map";
  }
  return "a value";
}

template <typename Int>
bool ParseInt(const std::string& s, Int* out) {
  const char* begin = s.data();
  const char* end = s.data() + s.size();
  if (begin != end && *begin == '+') ++begin;  // from_chars rejects '+'
  auto [ptr, ec] = std::from_chars(begin, end, *out);
  return ec == std::errc() && ptr == end && begin != end;
}

// Walks a YAML node against a message descriptor, filling the message and
// recording where each dotted key was written.
class Walker {
 public:
  Walker(std::string_view filename, std::map<std::string, std::string>* where)
      : filename_(std::string(filename)), where_(where) {}

  absl::Status Error(const YAML::Mark& mark, const std::string& path, const std::string& what) {
    std::string loc = mark.is_null()
                          ? std::string(filename_)
                          : absl::StrCat(filename_, ":", mark.line + 1, ":", mark.column + 1);
    return absl::InvalidArgumentError(
        path.empty() ? absl::StrCat(loc, ": ", what) : absl::StrCat(loc, ": ", path, ": ", what));
  }

  absl::Status WalkMessage(const YAML::Node& node, const YAML::Mark& key_mark,
                           const std::string& path, Message* msg) {
    if (node.IsNull()) return absl::OkStatus();  // `key:` alone = an empty map
    if (!node.IsMap()) {
      return Error(MarkOf(node, key_mark), path,
                   absl::StrCat("expected a map (keys: ", AllowedKeys(*msg->GetDescriptor()),
                                "), got ", Describe(node)));
    }
    const Descriptor& type = *msg->GetDescriptor();
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node& key = it->first;
      const YAML::Node& value = it->second;
      const YAML::Mark mark = MarkOf(key, MarkOf(node, key_mark));
      if (!key.IsScalar()) {
        return Error(mark, path, absl::StrCat("a key must be a plain name, got ", Describe(key)));
      }
      const std::string& name = key.Scalar();
      const std::string child = path.empty() ? name : absl::StrCat(path, ".", name);
      if (!seen.insert(name).second) return Error(mark, child, "duplicate key");
      const FieldDescriptor* field = type.FindFieldByName(name);
      if (field == nullptr) {
        return Error(mark, child,
                     absl::StrCat("unknown key (allowed: ", AllowedKeys(type), ")"));
      }
      const OneofDescriptor* oneof = field->real_containing_oneof();
      if (oneof != nullptr && msg->GetReflection()->HasOneof(*msg, oneof)) {
        std::vector<std::string> members;
        for (int i = 0; i < oneof->field_count(); ++i) members.push_back(oneof->field(i)->name());
        return Error(mark, child,
                     absl::StrCat("give only one of ", absl::StrJoin(members, ", ")));
      }
      (*where_)[child] = absl::StrCat(mark.line + 1, ":", mark.column + 1);
      GCL_RETURN_IF_ERROR(WalkField(value, mark, child, *field, msg));
    }
    return absl::OkStatus();
  }

 private:
  // Where `node` starts; a missing value (`key:` alone) is marked at the
  // next token, possibly lines below, so report it at its key instead.
  static YAML::Mark MarkOf(const YAML::Node& node, const YAML::Mark& fallback) {
    if (node.IsNull()) return fallback;
    YAML::Mark m = node.Mark();
    return m.is_null() ? fallback : m;
  }

  absl::Status WalkField(const YAML::Node& value, const YAML::Mark& key_mark,
                         const std::string& path, const FieldDescriptor& field, Message* msg) {
    const Reflection& refl = *msg->GetReflection();
    if (field.is_repeated()) {
      if (!value.IsSequence()) {
        // No scalar -> one-element list coercion: it hides typos.
        return Error(MarkOf(value, key_mark), path,
                     absl::StrCat("expected a list of ", ElementNoun(field), ", got ",
                                  Describe(value)));
      }
      for (std::size_t i = 0; i < value.size(); ++i) {
        const YAML::Node element = value[i];
        const std::string element_path = absl::StrCat(path, "[", i, "]");
        const YAML::Mark mark = MarkOf(element, MarkOf(value, key_mark));
        (*where_)[element_path] = absl::StrCat(mark.line + 1, ":", mark.column + 1);
        if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          GCL_RETURN_IF_ERROR(WalkMessage(element, mark, element_path, refl.AddMessage(msg, &field)));
        } else {
          GCL_RETURN_IF_ERROR(SetScalar(element, mark, element_path, field, msg));
        }
      }
      return absl::OkStatus();
    }
    if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Message* sub = refl.MutableMessage(msg, &field);
      if (field.message_type()->full_name() == "gcl.v1.Init" && value.IsScalar()) {
        // Shorthand `init: random` for `init: {random: true}`.
        if (value.Scalar() != "random" || value.Tag() == "!") {
          return Error(MarkOf(value, key_mark), path,
                       absl::StrCat("expected 'random', {checkpoint: ID}, {job: ID} or "
                                    "{random: true}, got ",
                                    Describe(value)));
        }
        static_cast<gcl::v1::Init*>(sub)->set_random(true);
        return absl::OkStatus();
      }
      return WalkMessage(value, key_mark, path, sub);
    }
    return SetScalar(value, key_mark, path, field, msg);
  }

  static std::string ElementNoun(const FieldDescriptor& field) {
    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_ENUM:
        return absl::StrCat("(", AllowedValues(*field.enum_type()), ")");
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return "maps";
      case FieldDescriptor::CPPTYPE_STRING:
        return "strings";
      case FieldDescriptor::CPPTYPE_BOOL:
        return "booleans";
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT:
        return "numbers";
      default:
        return "integers";
    }
  }

  // Sets (or, for a repeated field, appends) one scalar value.
  absl::Status SetScalar(const YAML::Node& node, const YAML::Mark& key_mark,
                         const std::string& path, const FieldDescriptor& field, Message* msg) {
    const YAML::Mark mark = MarkOf(node, key_mark);
    const Reflection& refl = *msg->GetReflection();
    const bool repeated = field.is_repeated();
    auto wrong = [&]() {
      return Error(mark, path,
                   absl::StrCat("expected ", Expected(field), ", got ", Describe(node)));
    };
    if (!node.IsScalar()) return wrong();
    const std::string& text = node.Scalar();
    // A quoted scalar ("5") is a string: do not read it as a number or bool.
    const bool quoted = node.Tag() == "!";
    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        int32_t v;
        if (quoted || !ParseInt(text, &v)) return wrong();
        repeated ? refl.AddInt32(msg, &field, v) : refl.SetInt32(msg, &field, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (quoted || !ParseInt(text, &v)) return wrong();
        repeated ? refl.AddInt64(msg, &field, v) : refl.SetInt64(msg, &field, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v;
        if (quoted || !ParseInt(text, &v)) return wrong();
        repeated ? refl.AddUInt32(msg, &field, v) : refl.SetUInt32(msg, &field, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v;
        if (quoted || !ParseInt(text, &v)) return wrong();
        repeated ? refl.AddUInt64(msg, &field, v) : refl.SetUInt64(msg, &field, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double v;
        if (quoted || !absl::SimpleAtod(text, &v) || !std::isfinite(v)) return wrong();
        if (field.cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
          repeated ? refl.AddFloat(msg, &field, static_cast<float>(v))
                   : refl.SetFloat(msg, &field, static_cast<float>(v));
        } else {
          repeated ? refl.AddDouble(msg, &field, v) : refl.SetDouble(msg, &field, v);
        }
        break;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        bool v;
        if (quoted || !YAML::convert<bool>::decode(node, v)) return wrong();
        repeated ? refl.AddBool(msg, &field, v) : refl.SetBool(msg, &field, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_STRING:
        repeated ? refl.AddString(msg, &field, text) : refl.SetString(msg, &field, text);
        break;
      case FieldDescriptor::CPPTYPE_ENUM: {
        const EnumValueDescriptor* v = FindYamlEnumValue(*field.enum_type(), text);
        if (v == nullptr) {
          return Error(mark, path,
                       absl::StrCat("bad value '", text,
                                    "' (allowed: ", AllowedValues(*field.enum_type()), ")"));
        }
        repeated ? refl.AddEnum(msg, &field, v) : refl.SetEnum(msg, &field, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return wrong();
    }
    return absl::OkStatus();
  }

  std::string filename_;
  std::map<std::string, std::string>* where_;
};

// Validation messages start with "<line>:<col>: " when the key's line is
// known: join them to the file name with ':' then, else with ": ".
absl::Status PrefixFilename(const absl::Status& s, const std::string& filename) {
  const std::string msg(s.message());
  const bool located = !msg.empty() && std::isdigit(static_cast<unsigned char>(msg[0]));
  return absl::Status(s.code(), absl::StrCat(filename, located ? ":" : ": ", msg));
}

}  // namespace

std::string YamlEnumName(const EnumValueDescriptor& value) {
  const std::string prefix = EnumPrefix(*value.type());
  std::string name = value.name();
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  name = absl::AsciiStrToLower(name);
  // The architecture doc spells dataset formats with '-' ("acdc-h5").
  if (value.type()->full_name() == "gcl.v1.Format") absl::StrReplaceAll({{"_", "-"}}, &name);
  return name;
}

const EnumValueDescriptor* FindYamlEnumValue(const EnumDescriptor& type, std::string_view text) {
  std::string upper = absl::AsciiStrToUpper(std::string(text));
  absl::StrReplaceAll({{"-", "_"}}, &upper);
  if (upper.empty()) return nullptr;
  const EnumValueDescriptor* v = type.FindValueByName(EnumPrefix(type) + upper);
  if (v == nullptr || v->number() == 0) return nullptr;
  return v;
}

absl::StatusOr<gcl::v1::JobSpec> ParseJobSpecYaml(std::string_view yaml_text,
                                                  std::string_view filename_view) {
  const std::string filename(filename_view);
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    // e.what() repeats the position as "yaml-cpp: error at line ..."; use msg.
    return absl::InvalidArgumentError(absl::StrCat(filename, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1,
                                                   ": YAML syntax error: ", e.msg));
  }
  if (docs.empty() || docs[0].IsNull()) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ": empty job spec"));
  }
  if (docs.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        filename, ":", docs[1].Mark().line + 1, ": one job spec per file (found a second "
        "YAML document)"));
  }
  gcl::v1::JobSpec spec;
  std::map<std::string, std::string> where;
  Walker walker(filename, &where);
  try {
    GCL_RETURN_IF_ERROR(walker.WalkMessage(docs[0], docs[0].Mark(), "", &spec));
  } catch (const YAML::Exception& e) {  // not expected: the walk checks types first
    return absl::InvalidArgumentError(absl::StrCat(filename, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": ", e.msg));
  }
  if (absl::Status s = ApplyDefaults(&spec); !s.ok()) return PrefixFilename(s, filename);
  if (absl::Status s = ValidateJobSpec(spec, where); !s.ok()) return PrefixFilename(s, filename);
  return spec;
}

absl::StatusOr<gcl::v1::JobSpec> ReadJobSpecFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string why = absl::StrCat(path, ": cannot open job spec: ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(why);
    if (err == EACCES) return absl::PermissionDeniedError(why);
    return absl::UnavailableError(why);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::UnavailableError(absl::StrCat(path, ": read error"));
  return ParseJobSpecYaml(text.str(), path);
}

}  // namespace gcl::spec
