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

#include "kd_build_config.h"
#include "proto/log.h"
#include "worker/options.h"

enum { EXIT_USAGE = 2 };

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

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
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
    kd_config cfg;
    kd_err err = {0};
    if (kd_options_load(&cfg, config_path, sets, n_sets, &err)) {
        fprintf(stderr, "crosskd-worker: %s\n", err.msg);
        return 1;
    }
    free(sets);
    if (print_config) {
        kd_config_dump(kd_options_table(), &cfg, stdout);
        return 0;
    }
    kd_log_init(0);
    KD_INFO("crosskd-worker %s: config %s (hash %016llx)", KD_VERSION, config_path,
            (unsigned long long)kd_config_hash(kd_options_table(), &cfg));
    KD_WARN("the trainer is not built yet: the config was validated and nothing was trained");
    return 0;
}
