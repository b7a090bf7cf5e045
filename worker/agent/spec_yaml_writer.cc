#include "worker/agent/spec_yaml_writer.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gcl/spec/job_spec_yaml.h"

namespace gcl::agent {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// YAML double-quoted scalar: the parser stores it as a string (tag "!").
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += absl::StrFormat("\\x%02x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// Shortest %g text that reads back to the same double (the parser uses
// absl::SimpleAtod). "1" stays "1": an integer-looking scalar is fine for a
// double field. Non-finite values cannot occur in a valid spec.
std::string Number(double v) {
  for (int precision = 6; precision < 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    double back;
    if (absl::SimpleAtod(s, &back) && back == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

std::string Scalar(const Message& msg, const FieldDescriptor& f, int index) {
  const Reflection& r = *msg.GetReflection();
  const bool rep = f.is_repeated();
  switch (f.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(rep ? r.GetRepeatedInt32(msg, &f, index) : r.GetInt32(msg, &f));
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(rep ? r.GetRepeatedInt64(msg, &f, index) : r.GetInt64(msg, &f));
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(rep ? r.GetRepeatedUInt32(msg, &f, index) : r.GetUInt32(msg, &f));
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(rep ? r.GetRepeatedUInt64(msg, &f, index) : r.GetUInt64(msg, &f));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return Number(rep ? r.GetRepeatedDouble(msg, &f, index) : r.GetDouble(msg, &f));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return Number(rep ? r.GetRepeatedFloat(msg, &f, index) : r.GetFloat(msg, &f));
    case FieldDescriptor::CPPTYPE_BOOL:
      return (rep ? r.GetRepeatedBool(msg, &f, index) : r.GetBool(msg, &f)) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_STRING:
      return Quote(rep ? r.GetRepeatedString(msg, &f, index) : r.GetString(msg, &f));
    case FieldDescriptor::CPPTYPE_ENUM:
      return spec::YamlEnumName(rep ? *r.GetRepeatedEnum(msg, &f, index) : *r.GetEnum(msg, &f));
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return "";
}

void Emit(const Message& msg, int indent, std::string* out) {
  const Reflection& r = *msg.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r.ListFields(msg, &fields);  // set fields, in field-number order
  const std::string pad(static_cast<size_t>(indent), ' ');
  for (const FieldDescriptor* f : fields) {
    absl::StrAppend(out, pad, f->name(), ":");
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        out->append("\n");
        for (int i = 0; i < r.FieldSize(msg, f); ++i) {
          std::string item;
          Emit(r.GetRepeatedMessage(msg, f, i), indent + 4, &item);
          if (item.empty()) {
            absl::StrAppend(out, pad, "  - {}\n");
          } else {
            // "- " replaces the first line's indentation.
            absl::StrAppend(out, pad, "  - ", item.substr(static_cast<size_t>(indent) + 4));
          }
        }
        continue;
      }
      std::string sub;
      Emit(r.GetMessage(msg, f), indent + 2, &sub);
      absl::StrAppend(out, sub.empty() ? " {}\n" : "\n", sub);
    } else if (f->is_repeated()) {
      out->append(" [");
      for (int i = 0; i < r.FieldSize(msg, f); ++i) {
        absl::StrAppend(out, i ? ", " : "", Scalar(msg, *f, i));
      }
      out->append("]\n");
    } else {
      absl::StrAppend(out, " ", Scalar(msg, *f, 0), "\n");
    }
  }
}

}  // namespace

std::string MessageToYaml(const google::protobuf::Message& message) {
  std::string out;
  Emit(message, 0, &out);
  return out;
}

}  // namespace gcl::agent
