/* crosskd-worker — one rank of a training job (DESIGN.md §2).
 *
 *   crosskd-worker CONFIG [--set key=value ...] [--print-config]
 *   crosskd-worker --help | --version
 *
 * Started by mpirun, by Slurm, or alone as a single rank. This main only parses the
 * command line and the config; the work is in the layer libraries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "daemon/coordinator.h"
#include "kd_build_config.h"
#include "proto/log.h"
#include "worker/dist.h"
#include "worker/options.h"
#include "worker/train/trainer.h"

enum { EXIT_USAGE = 2 };

static void mkdir_p(const char *path)
{
    char buf[KD_CFG_STR_BYTES];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: crosskd-worker CONFIG [--set key=value ...] [--print-config]\n"
            "       crosskd-worker --help | --version\n"
            "\n"
            "Trains a detector (optionally distilled from a frozen teacher) as one rank of an\n"
            "MPI job: mpirun -np 8 crosskd-worker conf/gfl.yaml\n"
            "\n"
            "  --set key=value   override one option (repeatable; value is YAML: 3, 0.5, [1, 2])\n"
            "  --print-config    print the effective config as YAML and exit\n"
            "  --help            this text and every option\n"
            "  --version         version and build features\n"
            "\n"
            "Options (YAML keys; nested mappings and dotted keys are the same thing):\n");
}

/* Rank 0 parses the config and broadcasts it as bytes, so every rank runs exactly the
 * same options and a bad file is reported once. */
static int load_config(const kd_dist *d, const char *path, const char **sets, int n_sets, kd_config *cfg)
{
    kd_err err = {0};
    long long st = KD_OK;
    if (d->rank == 0) st = kd_options_load(cfg, path, sets, n_sets, &err);
    kd_dist_bcast(d, &st, sizeof st, 0);
    if (st) {
        if (d->rank == 0) fprintf(stderr, "crosskd-worker: %s\n", err.msg);
        return 1;
    }
    kd_dist_bcast(d, cfg, sizeof *cfg, 0);
    return 0;
}

static char *config_text(const kd_config *cfg)
{
    char *text = NULL;
    size_t bytes = 0;
    FILE *f = open_memstream(&text, &bytes);
    if (!f) return NULL;
    kd_config_dump(kd_options_table(), cfg, f);
    fclose(f);
    return text;
}

static int run_job(int *argc, char ***argv, const char *config_path, const char **sets, int n_sets,
                   int print_config)
{
    kd_config cfg;
    kd_err err = {0};
    if (print_config) { /* no MPI needed to print */
        if (kd_options_load(&cfg, config_path, sets, n_sets, &err)) {
            fprintf(stderr, "crosskd-worker: %s\n", err.msg);
            return 1;
        }
        kd_config_dump(kd_options_table(), &cfg, stdout);
        return 0;
    }
    kd_dist d;
    if (kd_dist_init(argc, argv, &d, &err)) {
        fprintf(stderr, "crosskd-worker: %s\n", err.msg);
        return 1;
    }
    kd_log_init(d.rank);
    int rc = load_config(&d, config_path, sets, n_sets, &cfg);
    if (rc) {
        kd_dist_finalize(&d);
        return rc;
    }
    kd_log_level level = (kd_log_level)cfg.log_level;
    if (d.rank == 0) kd_log_set_level(level);
    char *text = config_text(&cfg);
    kd_coord *coord = NULL;
    if (d.rank == 0) {
        mkdir_p(cfg.work_dir);
        if (kd_coord_start_config(&coord, &cfg, &err))
            KD_WARN("status socket disabled: %s", err.msg);
        else
            KD_INFO("status socket: %s (crosskdctl --socket %s status)", kd_coord_socket_path(coord),
                    kd_coord_socket_path(coord));
    }
    kd_trainer_args a = {&cfg, config_path, text, &d, kd_coord_board(coord)};
    rc = kd_trainer_run(&a);
    kd_coord_shutdown(coord);
    free(text);
    kd_dist_finalize(&d);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0, print_config = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            kd_config_print_help(kd_options_table(), stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("crosskd-worker %s (cuda backend: %s)\n", KD_VERSION, KD_HAVE_CUDA ? "built" : "not built");
            return 0;
        } else if (strcmp(argv[i], "--set") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "crosskd-worker: --set needs key=value\n");
                return EXIT_USAGE;
            }
            sets[n_sets++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            sets[n_sets++] = argv[i] + 6;
        } else if (strcmp(argv[i], "--print-config") == 0) {
            print_config = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "crosskd-worker: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        } else if (!config_path) {
            config_path = argv[i];
        } else {
            fprintf(stderr, "crosskd-worker: more than one config file ('%s', '%s')\n", config_path, argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!config_path) {
        usage(stderr);
        fprintf(stderr, "crosskd-worker: missing CONFIG (see --help)\n");
        return EXIT_USAGE;
    }
    int rc = run_job(&argc, &argv, config_path, sets, n_sets, print_config);
    free(sets);
    return rc;
}
