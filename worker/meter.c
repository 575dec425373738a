/* meter.c — see meter.h. */
#include "worker/meter.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "proto/log.h"

void kd_meter_init(kd_meter *m, double images_per_iter)
{
    memset(m, 0, sizeof *m);
    m->images_per_iter = images_per_iter;
}

static int term_index(kd_meter *m, const char *name)
{
    for (int i = 0; i < m->n_terms; i++)
        if (!strcmp(m->names[i], name)) return i;
    if (m->n_terms == KD_METER_MAX_TERMS) return -1;
    snprintf(m->names[m->n_terms], KD_METER_NAME_BYTES, "%s", name);
    return m->n_terms++;
}

void kd_meter_add(kd_meter *m, const char *const *names, const double *values, int n,
                  double iter_seconds, double data_seconds)
{
    for (int i = 0; i < n; i++) {
        int t = term_index(m, names[i]);
        if (t >= 0) m->sums[t] += values[i];
    }
    m->window++;
    m->time_sum += iter_seconds;
    m->data_sum += data_seconds;
    if (m->run_iters++ > 0) m->run_time_sum += iter_seconds; /* the first step warms caches */
}

void kd_meter_add_sync(kd_meter *m, double seconds)
{
    m->sync_sum += seconds;
    m->have_sync = 1;
}

double kd_meter_mean_iter_time(const kd_meter *m)
{
    return m->run_iters > 1 ? m->run_time_sum / (double)(m->run_iters - 1) : 0.0;
}

void kd_meter_format_eta(double seconds, char *out, size_t cap)
{
    if (seconds < 0) seconds = 0;
    long long s = (long long)(seconds + 0.5);
    long long days = s / 86400;
    s %= 86400;
    if (days)
        snprintf(out, cap, "%lld day%s, %lld:%02lld:%02lld", days, days > 1 ? "s" : "", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(out, cap, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
}

double kd_meter_peak_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

void kd_meter_flush(kd_meter *m, const kd_meter_line *at, char *text, size_t text_cap, char *json,
                    size_t json_cap)
{
    int w = m->window ? m->window : 1;
    double t = m->time_sum / w, dt = m->data_sum / w;
    double ips = t > 0 ? m->images_per_iter / t : 0;
    double mean = kd_meter_mean_iter_time(m);
    if (mean <= 0) mean = t;
    char eta[64];
    kd_meter_format_eta(mean * (double)(at->max_iters - at->global_iter), eta, sizeof eta);
    double mem = kd_meter_peak_rss_mib();
    int width = snprintf(NULL, 0, "%lld", at->iters_per_epoch);
    size_t n = (size_t)snprintf(text, text_cap,
                                "Epoch(train) [%lld][%*lld/%lld]  lr: %.4e  eta: %s  time: %.4f  data_time: %.4f  "
                                "images/s: %.2f  memory: %.0f MiB",
                                at->epoch, width, at->iter_in_epoch, at->iters_per_epoch, at->lr, eta, t, dt,
                                ips, mem);
    kd_jsonl j;
    kd_jsonl_begin(&j);
    kd_jsonl_int(&j, "epoch", at->epoch);
    kd_jsonl_int(&j, "iter", at->global_iter);
    kd_jsonl_num(&j, "lr", at->lr);
    kd_jsonl_num(&j, "time", t);
    kd_jsonl_num(&j, "data_time", dt);
    kd_jsonl_num(&j, "images_per_s", ips);
    kd_jsonl_num(&j, "eta_s", mean * (double)(at->max_iters - at->global_iter));
    kd_jsonl_num(&j, "memory_mib", mem);
    if (m->have_sync) kd_jsonl_num(&j, "sync_time", m->sync_sum / w);
    /* "loss" first, then the terms in the order they were first seen. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n_terms; i++) {
            if ((strcmp(m->names[i], "loss") == 0) != (pass == 0)) continue;
            m->last[i] = m->sums[i] / w;
            if (n < text_cap) n += (size_t)snprintf(text + n, text_cap - n, "  %s: %.4f", m->names[i], m->last[i]);
            kd_jsonl_num(&j, m->names[i], m->last[i]);
        }
    snprintf(json, json_cap, "%s", kd_jsonl_end(&j));
    memset(m->sums, 0, sizeof m->sums);
    m->window = 0;
    m->time_sum = m->data_sum = m->sync_sum = 0;
}
