// gclctl, the command-line client of gcl-coordinator, as a function so tests
// run it in-process:
//
//   gclctl [--addr HOST:PORT] [--token T] VERB ARGS... [--output table|json]
//   submit FILE          sends the YAML text; prints the new job id
//   list [--state S]...  newest first: id, name, kind, state, attempt, reason
//   get ID               one job (reason, queue position, worker)
//   cancel ID [--reason TEXT]
//   watch ID             state changes until the job ends (exit 0 only
//                        when it SUCCEEDED, 1 when it FAILED or was CANCELLED)
//   workers              (needs a ListWorkers RPC the contract lacks: exit 1)
//
// Exit codes: 0 ok, 1 the coordinator refused or could not be reached, 2
// usage error. Errors are one line "gclctl: ..." on `err`; spec errors keep
// the server's "FILE:LINE:COL: key: what" with the user's file name.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "client/config.h"

namespace gcl::client {

// args excludes argv[0].
int RunGclctl(const std::vector<std::string>& args, const ConfigSources& sources, std::ostream& out,
              std::ostream& err);

// The one-line message a lab user sees for a failed RPC to `addr`.
std::string DescribeRpcError(const grpc::Status& status, const std::string& addr);

}  // namespace gcl::client
