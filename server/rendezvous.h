// The c10d rendezvous of a multi-rank attempt: rank 0's gcl-train hosts the
// TCPStore on "<rank-0 worker's advertised address>:<port>", every other
// rank connects to it. The coordinator picks the port from the rank-0
// worker's registered range: distinct from the ports of the other attempts
// that worker's ranks 0 may still hold (draining ones included), and
// different for each attempt of a job, so a new attempt never meets a
// TCPStore its predecessor's ranks still bind.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace gcl::server {

// The first free port of [port_min, port_max], probing from an offset that
// is a hash of job_id plus the attempt number. kResourceExhausted when
// every port of the range is in use; kInvalidArgument for an empty range.
absl::StatusOr<int32_t> PickRendezvousPort(std::string_view job_id, int32_t attempt,
                                           int32_t port_min, int32_t port_max,
                                           const std::set<int32_t>& in_use);

// "host:port", "[v6::addr]:port" for an IPv6 literal.
std::string JoinHostPort(std::string_view host, int32_t port);
// The port of "host:port" / "[v6]:port"; -1 when there is none.
int32_t PortOf(std::string_view host_port);

}  // namespace gcl::server
