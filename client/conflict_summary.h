// The "gradient conflicts at the end of pre-training" table of
// `gclctl results`: one row per job and meta-label pair, from the metric
// summaries the coordinator keeps when an attempt ends
// (server/metric_summaries.h):
//   JOB  PAIR  STEPS  NONE  SLIGHT  CONFLICT  INJECTIONS  COS PRE  COS POST
// NONE/SLIGHT/CONFLICT are shares of the encoder-tensor checks over the
// whole run (gcl_grad_conflicts_total{kind}); INJECTIONS is
// gcl_grad_modified_total; the cosines are the last logged step's.
#pragma once

#include <ostream>

#include "gcl/v1/job.pb.h"

namespace gcl::client {

// Writes the table (jobs in first-seen order, pairs sorted); returns false
// and writes nothing when no summary has a pair.
bool PrintConflictTable(const google::protobuf::RepeatedPtrField<gcl::v1::MetricSummary>& summaries,
                        std::ostream& out);

}  // namespace gcl::client
