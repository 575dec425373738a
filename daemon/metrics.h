/* metrics.h — the job's state in Prometheus text exposition format (version 0.0.4),
 * the reply of `crosskdctl metrics`.
 *
 * Families follow Prometheus naming: prefix `crosskd_`, base units (seconds, bytes,
 * ratios 0-1), `_total` only on counters, and low-cardinality labels (term, rank, state,
 * verb, code). Each family is one `# HELP`, one `# TYPE`, then its samples, contiguously;
 * label values are escaped (\\, \", \n); non-finite values print as NaN, +Inf, -Inf; the
 * text ends with '\n'.
 */
#ifndef KD_METRICS_H
#define KD_METRICS_H

#include <stdint.h>

#include "proto/control.h"
#include "proto/status_proto.h"

/* Counters kept by the status server itself. */
typedef struct kd_metrics_server {
    uint64_t connections_total;
    uint64_t requests_total[KD_VERB_COUNT]; /* by verb */
    uint64_t errors_total[KD_SC_COUNT];     /* by ERR code */
    int clients;                            /* open now */
} kd_metrics_server;

/* Append the exposition text for snapshot st (have_snapshot false: only the server
 * families and crosskd_up 0) to b. now is unix seconds. */
void kd_metrics_format(kd_sbuf *b, const kd_job_status *st, bool have_snapshot,
                       const kd_metrics_server *srv, double now);

/* Append s as an escaped label value (without quotes). */
void kd_metrics_label_escape(kd_sbuf *b, const char *s);

#endif
