/* conflict.c — the target-conflict counts of the paper's Fig. 3 (model.kd_cfg.log_conflict_ratio):
 * how often the teacher's class scores disagree with the targets the student's assigner gave.
 *
 * Over this rank's valid locations, with the teacher's scores sigma(T) (its cls output,
 * channel a*K + c for anchor a and class c) and the student's one-hot targets y (y_c = 1 for
 * the class a student anchor was assigned, 0 otherwise; background all 0):
 *   - teacher and student with the same anchors per location (GFL, ATSS and FCOS: one; a
 *     RetinaNet pair: nine): counted per anchor row. A row conflicts when some class has
 *     |sigma(T_ac) - y_ac| > conflict_threshold; positives are the rows assigned a class;
 *     rows in MaxIoU's ignore band have no target and are not counted.
 *   - a teacher with another number of anchors per location (a RetinaNet teacher of a GFL or
 *     ATSS student, paper Table 7, or the reverse): counted per location, the paper's
 *     "areas". The location's targets are the classes of any of its student rows; it
 *     conflicts when any teacher anchor there does; it is positive when any student row is.
 * The trainer sums both counts over ranks and logs conflicts / positives.
 */
#include "worker/distill/distill_internal.h"

#include <math.h>

/* 1 when a class of teacher anchor a at (i, l, pos) is off by more than the threshold from
 * the targets of the student labels lab[0..nl) (a class is a target when one of them is it). */
static int anchor_conflicts(const kd_distiller *d, int i, int l, size_t pos, int a, const int *lab, int nl)
{
    size_t hw = (size_t)d->g.h[l] * d->g.w[l];
    const float *t = d->tc[l].p + ((size_t)i * d->CC + (size_t)a * d->K) * hw + pos;
    for (int c = 0; c < d->K; c++) {
        float y = 0.0f;
        for (int j = 0; j < nl; j++) y = lab[j] == c ? 1.0f : y;
        if (fabsf(kd_sigmoid(t[(size_t)c * hw]) - y) > d->conflict_thr) return 1;
    }
    return 0;
}

void kd_conflict_counts(const kd_distiller *d, const kd_model *student, const kd_det_loss *ls,
                        kd_distill_terms *out)
{
    int At = d->g.A, As = student->head.A;
    double conflicts = 0, positives = 0;
    for (int i = 0; i < student->n; i++) {
        const int *label = kd_det_loss_assigned(ls, i);
        for (int l = 0; l < d->L; l++) {
            size_t soff = d->g.off[l] / (size_t)At * (size_t)As; /* the student's rows before level l */
            for (int y = 0; y < d->vh[l][i]; y++)
                for (int x = 0; x < d->vw[l][i]; x++) {
                    size_t pos = (size_t)y * d->g.w[l] + x;
                    const int *lab = label + soff + pos * (size_t)As;
                    if (At == As) {
                        for (int a = 0; a < At; a++) {
                            if (lab[a] == KD_ASSIGN_IGNORE) continue;
                            positives += lab[a] >= 0;
                            conflicts += anchor_conflicts(d, i, l, pos, a, &lab[a], 1);
                        }
                        continue;
                    }
                    int pos_any = 0, hit = 0;
                    for (int a = 0; a < As; a++) pos_any |= lab[a] >= 0;
                    for (int a = 0; a < At && !hit; a++) hit = anchor_conflicts(d, i, l, pos, a, lab, As);
                    positives += pos_any;
                    conflicts += hit;
                }
        }
    }
    out->conflicts = conflicts;
    out->positives = positives;
}
