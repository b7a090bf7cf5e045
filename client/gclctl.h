// gclctl, the command-line client of gcl-coordinator, as a function so tests
// run it in-process:
//
//   gclctl [--addr HOST:PORT] [--token T] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]
//          VERB ARGS... [--output table|json]
//   (each also from GCL_ADDR, GCL_TOKEN, GCL_TLS_CA, GCL_TLS_CERT, GCL_TLS_KEY
//   or ~/.config/gcl/config.yaml: client/config.h; the token goes as
//   "authorization: Bearer T" on every call; --tls-ca turns TLS on, and with
//   TLS --addr must be a name in the coordinator's certificate)
//   submit FILE          sends the YAML text; prints the new job id
//   list [--state S]...  newest first: id, name, kind, state, attempt, reason
//   get ID               one job (reason, queue position, worker)
//   cancel ID [--reason TEXT]
//   watch ID             state changes, a progress line (step/total bar, loss,
//                        step time, ETA, latest gradient-conflict figures) and
//                        checkpoints until the job ends; exit 0 only when it
//                        SUCCEEDED, 1 when it FAILED or was CANCELLED. Redraws
//                        the progress line on a terminal, one line per event
//                        otherwise; JSON Lines of the events with --output json.
//   logs ID [-f] [--attempt N]
//                        "[attempt N stream] text" lines; -f follows until
//                        the job ends (JSON Lines with --output json)
//   results [ID] [--per-class]
//                        Dice tables: rows variant, columns M_lab, cells
//                        "0.812 ± 0.013 (n=3)"; no ID: every finished job
//   checkpoints ID       id, attempt, step, size, sha256 (short), metric
//   download CKPT -o FILE
//                        streams to FILE.partial (resuming from its size),
//                        checks the sha256 of the whole file, renames to FILE;
//                        a mismatch removes FILE.partial and fails
//   workers              id, host, devices, state, lease left, running jobs
//
// --output json (or -o json, except for download) on every read verb.
// watch and logs -f reopen a broken stream after the last event seen.
//
// Exit codes: 0 ok, 1 the coordinator refused (a missing/invalid token:
// UNAUTHENTICATED, a job of someone else: PERMISSION_DENIED, ...) or could
// not be reached (also a failed TLS handshake), 2 usage or config error
// (also an unreadable TLS file). Errors are one line "gclctl: ..." on `err`
// saying what failed and what to do (unknown job: "no job ID (check `gclctl
// list`)"); spec errors keep the server's "FILE:LINE:COL: key: what" with the
// user's file name.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "client/config.h"

namespace gcl::client {

// args excludes argv[0]. out_is_tty: `out` is a terminal (watch redraws its
// progress line in place).
int RunGclctl(const std::vector<std::string>& args, const ConfigSources& sources, std::ostream& out,
              std::ostream& err, bool out_is_tty = false);

// The one-line message a lab user sees for a failed RPC to `addr`, saying
// what to do; `tls`: the channel used TLS (shapes the connection hints).
std::string DescribeRpcError(const grpc::Status& status, const std::string& addr, bool tls = false);

}  // namespace gcl::client
