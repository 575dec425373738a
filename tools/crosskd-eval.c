/* crosskd-eval — score a COCO detection results file against a ground-truth file, exactly
 * as pycocotools' COCOeval (bbox) does; a thin main over worker/eval.
 *
 *   crosskd-eval [--json] GT.json RESULTS.json
 *
 * Default output: the 12 lines COCOeval.summarize() prints. --json: one JSON object
 * {"stats": [12 numbers], "per_category": {"<category id>": AP@[.50:.95], ...}} with
 * round-trip precision (-1 marks a category without non-crowd ground truth).
 * Exit codes: 0 success; 1 bad input (unreadable, malformed or mismatched files, empty
 * results); 2 usage error. Notes (dropped detections) go to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/coco_json.h"
#include "proto/status.h"
#include "worker/eval/eval.h"

enum { EXIT_OK = 0, EXIT_INPUT = 1, EXIT_USAGE = 2 };

static void usage(FILE *f)
{
    fputs("usage: crosskd-eval [--json] GT.json RESULTS.json\n"
          "\n"
          "Evaluate COCO bbox detections exactly like pycocotools' COCOeval.\n"
          "  GT.json       a COCO instances file (images, annotations, categories)\n"
          "  RESULTS.json  a list of {\"image_id\", \"category_id\", \"bbox\": [x,y,w,h], \"score\"}\n"
          "  --json        print {\"stats\": [12 numbers], \"per_category\": {id: AP}} instead of\n"
          "                the 12 summary lines\n"
          "  -h, --help    this text\n"
          "\n"
          "Rules as in pycocotools: detections of an image absent from GT.json are an error,\n"
          "detections of a category absent from GT.json are ignored (with a note on stderr),\n"
          "only the 100 highest-scoring detections per image and category count.\n"
          "\n"
          "Exit status: 0 success, 1 bad input (unreadable, malformed or mismatched files,\n"
          "empty results), 2 usage error.\n",
          f);
}

int main(int argc, char **argv)
{
    int json = 0;
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && a[0] == '-' && a[1] != '\0') {
            if (!strcmp(a, "--json")) json = 1;
            else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                usage(stdout);
                return EXIT_OK;
            } else if (!strcmp(a, "--")) opts_done = 1;
            else {
                fprintf(stderr, "crosskd-eval: unknown option '%s'\n", a);
                usage(stderr);
                return EXIT_USAGE;
            }
            continue;
        }
        if (n_paths == 2) {
            fprintf(stderr, "crosskd-eval: too many arguments ('%s')\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        paths[n_paths++] = a;
    }
    if (n_paths != 2) {
        fprintf(stderr, "crosskd-eval: expected GT.json and RESULTS.json\n");
        usage(stderr);
        return EXIT_USAGE;
    }

    kd_err err = {0};
    kd_coco_file gt;
    if (kd_coco_file_load(paths[0], &gt, &err) != KD_OK) {
        fprintf(stderr, "crosskd-eval: %s\n", err.msg);
        return EXIT_INPUT;
    }
    kd_coco_det *dets = NULL;
    size_t n_dets = 0;
    if (kd_coco_results_load(paths[1], &dets, &n_dets, &err) != KD_OK) {
        fprintf(stderr, "crosskd-eval: %s\n", err.msg);
        kd_coco_file_free(&gt);
        return EXIT_INPUT;
    }
    if (n_dets == 0) {
        fprintf(stderr, "crosskd-eval: %s: the results list is empty; nothing to evaluate "
                        "(pycocotools' loadRes fails on an empty list too)\n", paths[1]);
        kd_coco_file_free(&gt);
        free(dets);
        return EXIT_INPUT;
    }
    kd_eval_result r;
    if (kd_eval_coco_run(&gt, dets, n_dets, &r, &err) != KD_OK) {
        fprintf(stderr, "crosskd-eval: %s: %s\n", paths[1], err.msg);
        kd_coco_file_free(&gt);
        free(dets);
        return EXIT_INPUT;
    }
    if (r.n_dets_unknown_cat)
        fprintf(stderr, "crosskd-eval: note: %zu detection(s) have a category_id that is not in "
                        "%s; ignored, as pycocotools ignores them\n", r.n_dets_unknown_cat, paths[0]);
    if (r.n_dets_over_cap)
        fprintf(stderr, "crosskd-eval: note: %zu detection(s) beyond the %d best per image and "
                        "category are not counted\n", r.n_dets_over_cap, KD_EVAL_MAX_DETS);
    if (json) kd_eval_json_print(stdout, &r);
    else kd_eval_summary_print(stdout, &r);
    int rc = fflush(stdout) ? EXIT_INPUT : EXIT_OK;
    kd_eval_result_free(&r);
    kd_coco_file_free(&gt);
    free(dets);
    return rc;
}
