// Reading a YAML job spec (architecture.md section 4) into gcl.v1.JobSpec.
//
// The YAML is walked against the JobSpec protobuf descriptor by reflection,
// so proto/gcl/v1/spec.proto is the single schema: keys are field names,
// nested messages are maps, repeated fields are lists, enum values are spelled
// in lower case without the enum's prefix ("acdc-h5" -> FORMAT_ACDC_H5,
// "pretrain" -> KIND_PRETRAIN; '-' and '_' are interchangeable).
//
// Every error is kInvalidArgument with the message
//   "<filename>:<line>:<col>: <dotted.key.path>: <what is wrong>"
// (1-based line and column), e.g.
//   "job.yaml:5:3: method.pool_kk: unknown key (allowed: variant, image, ...)".
// List elements are named "labeled_volumes[1]".
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gcl/v1/spec.pb.h"
#include "google/protobuf/descriptor.h"

namespace gcl::spec {

// Parses YAML text into a JobSpec. Rejects YAML syntax errors, unknown keys,
// duplicate keys, wrong types (a string or quoted scalar where a number or
// bool is expected, a scalar where a list or map is expected, ...), bad enum
// values (the message lists the allowed ones) and two members of a oneof.
// A scalar is never coerced into a one-element list. Then applies
// ApplyDefaults (variant presets, section 8/13 defaults) and checks ranges
// and consistency with ValidateJobSpec; those errors name the key and the
// line it was written on (or the line of its parent map when it was not
// written at all; no line when the whole chain is absent).
// `init` also accepts the scalar form `init: random`.
absl::StatusOr<gcl::v1::JobSpec> ParseJobSpecYaml(std::string_view yaml_text,
                                                  std::string_view filename);

// Reads `path` and parses it as above (filename in messages = `path`).
// kNotFound naming the path when it does not exist; kPermissionDenied or
// kUnavailable when it cannot be read. Relative paths inside the spec are
// returned as written (the runner resolves them against the spec's folder).
absl::StatusOr<gcl::v1::JobSpec> ReadJobSpecFile(const std::string& path);

// The YAML spelling of an enum value: "acdc-h5" for FORMAT_ACDC_H5 (dataset
// formats use '-', as in the architecture doc), "grad_mitigator" for
// COMBINE_GRAD_MITIGATOR.
std::string YamlEnumName(const google::protobuf::EnumValueDescriptor& value);

// The enum value spelled `text` in YAML (case-insensitive, '-' == '_'), or
// nullptr. The *_UNSPECIFIED value is never matched.
const google::protobuf::EnumValueDescriptor* FindYamlEnumValue(
    const google::protobuf::EnumDescriptor& type, std::string_view text);

}  // namespace gcl::spec
