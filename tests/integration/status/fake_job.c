/* fake_job.c — a stand-in for the trainer, to test the status socket against a real
 * running job (issue #9) until crosskd-worker's step loop exists.
 *
 *   fake_job --work-dir DIR [--ranks N] [--steps N] [--step-ms MS] [--ckpt-ms MS]
 *            [--tcp-port P --token-file F] [--max-clients N] [--request-timeout S]
 *            [--write-timeout S] [--ready-file F] [--stats-file F] [--config-pad BYTES]
 *
 * It starts the coordinator (daemon/coordinator.h) the way the trainer will, then runs N
 * simulated ranks as threads. The ranks follow the step loop documented in
 * proto/control.h: rank 0 polls the board, a barrier plays MPI_Bcast, every rank acts on
 * the same decision at the same boundary (checkpoint, stop, pause), a second barrier plays
 * the gather of per-rank rows, and rank 0 publishes the snapshot. Checkpoints are real
 * files written atomically (temp, fsync, rename, fsync of the directory) by rank 0.
 *
 * When the coordinator is up it writes the ready file ("socket=PATH\ntcp_port=P\n",
 * atomically). On exit it writes the stats file: steps done, and the longest time one
 * publish or poll took (the cost the status server adds to a step). Exit status: 0 after
 * a clean stop or the last step, 1 on errors, 2 on usage. --config-pad appends comment
 * lines to the `config` reply, to test clients that never read a large reply.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/coordinator.h"
#include "proto/log.h"
#include "worker/options.h"

enum { MAX_RANKS = 16 };

typedef struct job {
    int ranks;
    long long steps;
    int step_ms, ckpt_ms;
    char work_dir[512];
    kd_control_board *board;
    pthread_barrier_t bar;
    kd_control ctl;                    /* the "broadcast" buffer */
    kd_rank_status rows[MAX_RANKS];    /* the "gather" buffer */
    kd_job_status st;                  /* rank 0's snapshot */
    double max_board_seconds;          /* longest publish/poll */
    long long steps_done;
    int failed;
    double step_time_ema, data_time_ema;
} job;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000.0) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static double rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

/* temp + fsync + rename + fsync(dir); returns 0 or -1 with msg filled */
static int write_atomic(const char *dir, const char *name, const void *data, size_t bytes,
                        char *msg, size_t msg_cap)
{
    char tmp[1100], path[1100];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp.%ld", dir, name, (long)getpid());
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { snprintf(msg, msg_cap, "%s: %s", tmp, strerror(errno)); return -1; }
    const char *p = data;
    for (size_t off = 0; off < bytes;) {
        ssize_t n = write(fd, p + off, bytes - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { snprintf(msg, msg_cap, "%s: %s", tmp, strerror(errno)); close(fd); unlink(tmp); return -1; }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        snprintf(msg, msg_cap, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    return 0;
}

/* Rank 0 writes ckpt-<iter>.bin and the `latest` pointer, then reports to the board. */
static void save_checkpoint(job *j, long long iter, uint64_t gen)
{
    char name[64], msg[512] = "", path[1100];
    snprintf(name, sizeof name, "ckpt-%08lld.bin", iter);
    snprintf(path, sizeof path, "%s/%s", j->work_dir, name);
    j->st.state = KD_JOB_CHECKPOINTING;
    kd_control_board_publish(j->board, &j->st);
    sleep_ms(j->ckpt_ms); /* a slow disk: the reply must still come only after the file */
    size_t bytes = 64 * 1024;
    unsigned char *blob = malloc(bytes);
    int ok = blob != NULL;
    if (blob) {
        int h = snprintf((char *)blob, bytes, "CROSSKD-FAKE-CKPT step=%lld\n", iter);
        for (size_t i = (size_t)h; i < bytes; i++) blob[i] = (unsigned char)(i * 2654435761u >> 13);
        ok = write_atomic(j->work_dir, name, blob, bytes, msg, sizeof msg) == 0;
        if (ok) ok = write_atomic(j->work_dir, "latest", name, strlen(name), msg, sizeof msg) == 0;
        free(blob);
    }
    if (ok) {
        snprintf(j->st.last_checkpoint_path, sizeof j->st.last_checkpoint_path, "%s", path);
        j->st.last_checkpoint_wall = wall_now();
        j->st.last_checkpoint_step = iter;
    }
    double t0 = mono_now();
    kd_control_board_checkpoint_done(j->board, gen, path, iter, ok, ok ? "" : msg);
    double dt = mono_now() - t0;
    if (dt > j->max_board_seconds) j->max_board_seconds = dt;
}

static void fill_snapshot(job *j, long long iter)
{
    kd_job_status *st = &j->st;
    long long per_epoch = 50;
    st->world_size = j->ranks;
    st->iter = iter;
    st->total_iters = j->steps;
    st->iters_per_epoch = per_epoch;
    st->epoch = iter / per_epoch + 1;
    st->max_epochs = (j->steps + per_epoch - 1) / per_epoch;
    st->iter_in_epoch = iter % per_epoch;
    double x = (double)iter;
    kd_job_status_set_loss(st, "loss_cls", 1.2 * exp(-x / 300.0) + 0.2);
    kd_job_status_set_loss(st, "loss_bbox", 0.8 * exp(-x / 400.0) + 0.1);
    kd_job_status_set_loss(st, "loss_dfl", 0.5 * exp(-x / 500.0) + 0.05);
    kd_job_status_set_loss(st, "loss_cls_kd", 0.6 * exp(-x / 250.0) + 0.05);
    kd_job_status_set_loss(st, "loss_reg_kd", 0.4 * exp(-x / 350.0) + 0.02);
    st->loss_total = 0;
    for (int i = 0; i < st->n_losses; i++) st->loss_total += st->losses[i].value;
    st->lr = iter < 20 ? 0.01 * (0.001 + 0.999 * x / 20.0) : 0.01;
    st->step_time_seconds = j->step_time_ema;
    st->data_time_seconds = j->data_time_ema;
    st->images_per_second = j->step_time_ema > 0 ? 2.0 * j->ranks / j->step_time_ema : 0;
    st->eta_seconds = j->step_time_ema * (double)(j->steps - iter);
    st->memory_bytes = 0;
    for (int r = 0; r < j->ranks; r++)
        if (j->rows[r].memory_bytes > st->memory_bytes) st->memory_bytes = j->rows[r].memory_bytes;
    if (iter > 0 && iter % per_epoch == 0) { /* a simulated evaluation each epoch */
        st->last_ap = 0.1 + 0.3 * (1.0 - exp(-x / 200.0));
        st->last_eval_step = iter;
    }
    st->n_ranks = j->ranks;
    memcpy(st->ranks, j->rows, sizeof(kd_rank_status) * (size_t)j->ranks);
}

static void publish(job *j)
{
    double t0 = mono_now();
    kd_control_board_publish(j->board, &j->st);
    double dt = mono_now() - t0;
    if (dt > j->max_board_seconds) j->max_board_seconds = dt;
}

typedef struct rank_arg { job *j; int rank; } rank_arg;

static void *rank_main(void *p)
{
    rank_arg *ra = p;
    job *j = ra->j;
    int r = ra->rank;
    kd_rank_status *row = &j->rows[r];
    long long iter = 0;
    for (;;) {
        if (r == 0) {
            double t0 = mono_now();
            kd_control_board_poll(j->board, &j->ctl);
            double dt = mono_now() - t0;
            if (dt > j->max_board_seconds) j->max_board_seconds = dt;
        }
        pthread_barrier_wait(&j->bar); /* MPI_Bcast of j->ctl */
        kd_control c = j->ctl;
        bool last = iter >= j->steps;
        uint64_t gen = c.checkpoint_gen;
        if (gen || last) {
            row->state = KD_RANK_WAITING;
            if (r == 0) save_checkpoint(j, iter, gen ? gen : 0);
            pthread_barrier_wait(&j->bar); /* no rank runs past the checkpoint */
        }
        if ((c.flags & KD_CONTROL_STOP) || last) {
            row->state = KD_RANK_STOPPED;
            pthread_barrier_wait(&j->bar);
            if (r == 0) {
                fill_snapshot(j, iter);
                j->st.state = KD_JOB_STOPPED;
                publish(j);
            }
            break;
        }
        if (c.flags & KD_CONTROL_PAUSE) {
            row->state = KD_RANK_WAITING;
            pthread_barrier_wait(&j->bar); /* gather: every rank is held */
            if (r == 0) {
                fill_snapshot(j, iter);
                j->st.state = KD_JOB_PAUSED;
                publish(j);
            }
            sleep_ms(20);
            pthread_barrier_wait(&j->bar);
            continue;
        }
        /* one simulated step: wait for data, compute */
        double t0 = mono_now();
        sleep_ms(j->step_ms * 0.1);
        double data_time = mono_now() - t0;
        sleep_ms(j->step_ms * (0.9 + 0.02 * r));
        iter++;
        row->iter = iter;
        row->last_step_seconds = mono_now() - t0;
        row->memory_bytes = rss_bytes() / j->ranks;
        row->state = KD_RANK_RUNNING;
        pthread_barrier_wait(&j->bar); /* gather of the rows */
        if (r == 0) {
            double a = iter == 1 ? 1.0 : 0.2;
            j->step_time_ema = (1 - a) * j->step_time_ema + a * row->last_step_seconds;
            j->data_time_ema = (1 - a) * j->data_time_ema + a * data_time;
            fill_snapshot(j, iter);
            j->st.state = KD_JOB_RUNNING;
            publish(j);
            j->steps_done = iter;
        }
        pthread_barrier_wait(&j->bar); /* rank 0 has read every row */
    }
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: fake_job --work-dir DIR [--ranks N] [--steps N] [--step-ms MS] [--ckpt-ms MS]\n"
                    "                [--tcp-port P --token-file F] [--max-clients N] [--request-timeout S]\n"
                    "                [--write-timeout S] [--ready-file F] [--stats-file F] [--config-pad BYTES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    kd_log_init(0);
    static job j;
    j.ranks = 2;
    j.steps = 1000000;
    j.step_ms = 20;
    j.ckpt_ms = 200;
    kd_coord_opts o;
    kd_coord_opts_defaults(&o);
    const char *ready = NULL, *stats = NULL;
    long config_pad = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--work-dir")) snprintf(j.work_dir, sizeof j.work_dir, "%s", v);
        else if (!strcmp(a, "--ranks")) j.ranks = atoi(v);
        else if (!strcmp(a, "--steps")) j.steps = atoll(v);
        else if (!strcmp(a, "--step-ms")) j.step_ms = atoi(v);
        else if (!strcmp(a, "--ckpt-ms")) j.ckpt_ms = atoi(v);
        else if (!strcmp(a, "--tcp-port")) { o.tcp_enable = true; o.tcp_port = atoi(v); }
        else if (!strcmp(a, "--token-file")) snprintf(o.token_file, sizeof o.token_file, "%s", v);
        else if (!strcmp(a, "--max-clients")) o.max_clients = atoi(v);
        else if (!strcmp(a, "--request-timeout")) o.request_timeout_s = atof(v);
        else if (!strcmp(a, "--write-timeout")) o.write_timeout_s = atof(v);
        else if (!strcmp(a, "--ready-file")) ready = v;
        else if (!strcmp(a, "--stats-file")) stats = v;
        else if (!strcmp(a, "--config-pad")) config_pad = atol(v);
        else return usage();
    }
    if (!j.work_dir[0] || j.ranks < 1 || j.ranks > MAX_RANKS || j.steps < 1) return usage();

    /* The effective config, as the trainer would render it for `crosskdctl config`. */
    kd_config cfg;
    kd_err err = {0};
    char set_wd[600];
    snprintf(set_wd, sizeof set_wd, "work_dir=%s", j.work_dir);
    const char *sets[] = {set_wd};
    if (kd_options_load(&cfg, NULL, sets, 1, &err) != KD_OK) {
        fprintf(stderr, "fake_job: %s\n", err.msg);
        return 1;
    }
    char *text = NULL;
    size_t text_bytes = 0;
    FILE *f = open_memstream(&text, &text_bytes);
    kd_config_dump(kd_options_table(), &cfg, f);
    for (long k = 0; k + 64 <= config_pad; k += 64)
        fprintf(f, "# padding to make a large reply ...........................%04ld\n", (k / 64) % 10000);
    fclose(f);
    snprintf(o.work_dir, sizeof o.work_dir, "%s", j.work_dir);
    o.config_text = text;

    kd_coord *coord = NULL;
    if (kd_coord_start(&coord, &o, &err) != KD_OK) {
        fprintf(stderr, "fake_job: %s\n", err.msg);
        free(text);
        return 1;
    }
    free(text);
    j.board = kd_coord_board(coord);
    kd_job_status_init(&j.st);
    snprintf(j.st.job_name, sizeof j.st.job_name, "fake-job");
    snprintf(j.st.config_path, sizeof j.st.config_path, "conf/fake_tiny.yaml");
    j.st.start_wall = wall_now();
    for (int r = 0; r < j.ranks; r++) {
        gethostname(j.rows[r].host, sizeof j.rows[r].host - 1);
        snprintf(j.rows[r].device, sizeof j.rows[r].device, "cpu");
        j.rows[r].state = KD_RANK_RUNNING;
    }
    if (ready) {
        char body[256], name[64];
        int n = snprintf(body, sizeof body, "socket=%s\ntcp_port=%d\npid=%ld\n",
                         kd_coord_socket_path(coord), kd_coord_tcp_port(coord), (long)getpid());
        char msg[256];
        const char *slash = strrchr(ready, '/');
        char dir[512];
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - ready) : 1, slash ? ready : ".");
        snprintf(name, sizeof name, "%s", slash ? slash + 1 : ready);
        if (write_atomic(dir, name, body, (size_t)n, msg, sizeof msg) != 0)
            fprintf(stderr, "fake_job: ready file: %s\n", msg);
    }

    pthread_barrier_init(&j.bar, NULL, (unsigned)j.ranks);
    pthread_t th[MAX_RANKS];
    rank_arg ra[MAX_RANKS];
    for (int r = 0; r < j.ranks; r++) {
        ra[r] = (rank_arg){&j, r};
        pthread_create(&th[r], NULL, rank_main, &ra[r]);
    }
    for (int r = 0; r < j.ranks; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&j.bar);
    kd_coord_shutdown(coord);
    if (stats) {
        FILE *sf = fopen(stats, "w");
        if (sf) {
            fprintf(sf, "steps=%lld\nmax_board_ms=%.3f\n", j.steps_done, 1000.0 * j.max_board_seconds);
            fclose(sf);
        }
    }
    fprintf(stderr, "fake_job: stopped after %lld steps; longest publish/poll %.3f ms\n",
            j.steps_done, 1000.0 * j.max_board_seconds);
    return j.failed ? 1 : 0;
}
