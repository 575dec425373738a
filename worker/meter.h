/* meter.h — the numbers a training log line carries, as MMDetection users know them:
 * every loss term and the total averaged over the logging window, lr, time and data_time
 * per iteration (window means), images/s, ETA from the mean iteration time since the run
 * (re)started, and memory. Formatting produces the text line and the JSON-lines record.
 *
 *   Epoch(train) [1][  50/733]  lr: 1.2500e-03  eta: 0:12:34  time: 0.4521  data_time: 0.0123
 *     images/s: 4.42  memory: 812 MiB  loss: 1.9234  loss_cls: 0.8123  loss_bbox: 0.6011 ...
 */
#ifndef KD_METER_H
#define KD_METER_H

#include <stddef.h>

#define KD_METER_MAX_TERMS 24
#define KD_METER_NAME_BYTES 32

typedef struct kd_meter {
    int n_terms;
    char names[KD_METER_MAX_TERMS][KD_METER_NAME_BYTES];
    double sums[KD_METER_MAX_TERMS]; /* window sums */
    double last[KD_METER_MAX_TERMS]; /* window means at the last flush */
    int window;                      /* iterations in the current window */
    double time_sum, data_sum;       /* window sums */
    double sync_sum;                 /* window sum of the gradient all-reduce wait */
    int have_sync;
    double run_time_sum;             /* since start, first iteration excluded */
    long long run_iters;
    double images_per_iter;
} kd_meter;

void kd_meter_init(kd_meter *m, double images_per_iter);
/* Add one iteration: named loss values (total must be among them as "loss"). */
void kd_meter_add(kd_meter *m, const char *const *names, const double *values, int n,
                  double iter_seconds, double data_seconds);
/* Add the seconds the last iteration waited for its gradient all-reduce (logged in the
 * JSON line as sync_time, the window mean; absent when never called). */
void kd_meter_add_sync(kd_meter *m, double seconds);
/* Mean iteration time since start (seconds); 0 before two iterations. */
double kd_meter_mean_iter_time(const kd_meter *m);
/* "1 day, 2:03:04" / "0:12:34" like Python's timedelta. */
void kd_meter_format_eta(double seconds, char *out, size_t cap);
/* Peak resident memory of this process in MiB. */
double kd_meter_peak_rss_mib(void);

typedef struct kd_meter_line {
    long long epoch, max_epochs;  /* 1-based for display */
    long long iter_in_epoch, iters_per_epoch; /* 1-based for display */
    long long global_iter, max_iters;
    double lr;
} kd_meter_line;

/* Format the window's text line and JSON-lines object, then start a new window. */
void kd_meter_flush(kd_meter *m, const kd_meter_line *at, char *text, size_t text_cap, char *json,
                    size_t json_cap);

#endif
