/* signals.h — SIGTERM, SIGUSR1 and SIGINT as requests, never as interruptions.
 *
 * Slurm sends SIGTERM (time limit) or the --signal of the batch script (SIGUSR1 here) and
 * mpirun forwards both to every rank. The handler only records which signal arrived; the
 * training loop reads the flags at a step boundary, agrees across ranks (an all-reduce of
 * the flags, so every rank stops at the same iteration), saves a checkpoint and exits
 * with KD_EXIT_REQUEUE (worker/dist.h). A second SIGINT exits at once (an impatient user).
 */
#ifndef KD_SIGNALS_H
#define KD_SIGNALS_H

enum { KD_SIG_NONE = 0, KD_SIG_STOP = 1 /* SIGTERM, SIGUSR1 */, KD_SIG_INTERRUPT = 2 /* SIGINT */ };

void kd_signals_install(void);
/* Bit set of KD_SIG_* received so far (not cleared). */
int kd_signals_pending(void);
/* Forget received signals (tests). */
void kd_signals_reset(void);

#endif
