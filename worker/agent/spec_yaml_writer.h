// gcl.v1.JobSpec -> YAML text that gcl::spec::ParseJobSpecYaml reads back
// into an equal JobSpec (the agent hands gcl-train a spec file; the trainer
// only reads YAML). Written by reflection over the descriptor, so fields
// added to proto/gcl/v1/spec.proto are emitted without changes here.
//
// Spelling: only set fields (proto3 presence: `optional` fields when set,
// plain scalars when non-zero, messages when present, `{}` when present
// but empty); enums by gcl::spec::YamlEnumName ("acdc-h5", "grad_mitigator");
// strings double-quoted; doubles with the shortest text that reads back
// bit-identical; repeated scalars as flow lists `[1, 2]`.
#pragma once

#include <string>

#include "gcl/v1/spec.pb.h"
#include "google/protobuf/message.h"

namespace gcl::agent {

// Any message whose fields are scalars, enums, strings or messages (JobSpec
// and its parts). Maps are not supported (JobSpec has none).
std::string MessageToYaml(const google::protobuf::Message& message);

inline std::string JobSpecToYaml(const gcl::v1::JobSpec& spec) { return MessageToYaml(spec); }

}  // namespace gcl::agent
