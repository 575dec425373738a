# shellcheck shell=bash
# crosskd-job.sh — the body shared by the batch scripts in this folder (crosskd-1node.sbatch,
# crosskd-multinode.sbatch, crosskd-array.sbatch). Sourced by them, never submitted itself.
#
# kd_job_run CONFIG [--set key=value ...] does, inside a Slurm allocation:
#   1. work dir  $CROSSKD_WORK_DIR, else <root>/<job name> (array: <root>/<job name>/<task>)
#                with <root> = $CROSSKD_WORK_ROOT, else <submit dir>/work_dirs. The worker's
#                files (checkpoints/iter_<step>.ckpt + checkpoints/latest, logs, final
#                weights, status socket) and logs/slurm-<job>.log (this script's and every
#                rank's output, appended across requeues) go there.
#   2. launch    one rank per task: srun --mpi=pmix (default) or mpirun (CROSSKD_LAUNCHER),
#                `crosskd-worker CONFIG --set work_dir=<work dir> --set resume=auto [--set ...]`,
#                so a requeued or resubmitted job continues from the latest valid checkpoint.
#   3. signals   SIGUSR1 (sent by Slurm to this shell before the time limit because of
#                `--signal=B:USR1@<s>`, or by `scancel --batch --signal=USR1`) and SIGTERM are
#                forwarded to the launcher as SIGUSR1; srun and mpirun pass it to every rank;
#                the worker checkpoints at the next step boundary and exits 85.
#   4. requeue   exit status 85 (KD_EXIT_REQUEUE, worker/dist.h) after SIGUSR1 (or with no
#                signal: the worker asked for it) -> `scontrol requeue` of this job (array:
#                of this array task only); Slurm starts the script again later (same job
#                id, SLURM_RESTART_COUNT + 1) and step 2 resumes. After SIGTERM the job is
#                requeued only if Slurm says it reached its time limit (Reason=TimeLimit):
#                otherwise SIGTERM means `scancel` (the user's wish) or a preemption (Slurm
#                requeues a preempted --requeue job itself). Any other status ends the job
#                with that status. If the worker is ended by a signal after SIGUSR1 (e.g.
#                before it installed its handler), the job is requeued all the same: the
#                next start resumes from the latest checkpoint.
#
# Environment (all optional):
#   CROSSKD_WORKER      worker program (default: <checkout>/build/tools/crosskd-worker, else
#                       crosskd-worker on PATH)
#   CROSSKD_LAUNCHER    srun | mpirun (default srun)
#   CROSSKD_SRUN_MPI    srun's --mpi plugin (default pmix)
#   CROSSKD_LAUNCH_ARGS extra words for the launcher (e.g. "--cpu-bind=cores")
#   CROSSKD_WORK_ROOT, CROSSKD_WORK_DIR   see 1.
#   CROSSKD_MAX_REQUEUES requeue at most this many times (default 20), then stop with 85
#   CROSSKD_STATUS_PORT  also serve the status protocol on TCP on this port, with a token
#                       in <work dir>/status.token (made once, mode 0600)
#   CROSSKD_STATUS_HOST  the address it listens on (default 127.0.0.1: reach it through an
#                       ssh tunnel; 0.0.0.0 exposes it to the cluster network, where the
#                       token travels in clear)
#   OMP_NUM_THREADS     default: --cpus-per-task
#   KD_JOB_NOTE         a line printed at each start (the array script names its row)
# The worker picks its GPU from its node-local rank among the GPUs the job step sees, so
# allocate GPUs per node (--gpus-per-node / --gres=gpu:N) and do not hide them per task
# (no --gpus-per-task, no --gpu-bind).

KD_EXIT_REQUEUE=85

kd_say() { echo "crosskd-job[$(date +%H:%M:%S)]: $*"; }
kd_die() { echo "crosskd-job: error: $*" >&2; exit 1; }

# kd_field "<scontrol show job -o line>" NAME -> the value of NAME=
kd_field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }
# kd_seconds [d-][hh:]mm:ss -> seconds (nothing for UNLIMITED, N/A, ...)
kd_seconds() { printf '%s\n' "$1" | awk -F'[-:]' '/^[0-9]+([-:][0-9]+)*$/ { s = 0; w = 1; for (i = NF; i >= 1; i--) { s += $i * w; w *= (NF - i == 2) ? 24 : 60 }; print s }'; }

# The checkout this file belongs to (deploy/slurm/ -> ../..).
kd_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

kd_find_worker() {
  if [ -n "${CROSSKD_WORKER:-}" ]; then
    command -v "$CROSSKD_WORKER" >/dev/null 2>&1 || kd_die "CROSSKD_WORKER='$CROSSKD_WORKER' is not an executable"
    command -v "$CROSSKD_WORKER"
  elif [ -x "$kd_top/build/tools/crosskd-worker" ]; then
    echo "$kd_top/build/tools/crosskd-worker"
  elif command -v crosskd-worker >/dev/null 2>&1; then
    command -v crosskd-worker
  else
    kd_die "crosskd-worker not found: build it (bash deploy/build.sh), put it on PATH or set CROSSKD_WORKER"
  fi
}

# ---- signals ----------------------------------------------------------------------------
# kd_sig: the requeue signal received (USR1 or TERM); kd_term: for SIGTERM, "timelimit" or
# "cancel"; kd_child: the launcher, once started. The batch scripts trap both signals in
# their first line (kd_early_signal) so none is lost before this file is read.
kd_child="" kd_sig="" kd_term="" kd_interrupted=0 kd_jobref=${SLURM_JOB_ID:-}
kd_on_signal() {
  kd_interrupted=1
  [ "$kd_sig" = TERM ] || kd_sig=$1
  if [ "$1" = TERM ] && [ -z "$kd_term" ]; then
    # At the time limit Slurm records Reason=TimeLimit (state TIMEOUT, shown as COMPLETING
    # while the job is being killed) and RunTime has reached TimeLimit; scancel leaves
    # Reason=None with time to spare.
    local info reason run lim
    info=$(scontrol show job -o "$kd_jobref" 2>/dev/null | head -n1)
    reason=$(kd_field "$info" Reason) run=$(kd_seconds "$(kd_field "$info" RunTime)") lim=$(kd_seconds "$(kd_field "$info" TimeLimit)")
    if [ "$(kd_field "$info" JobState)" = TIMEOUT ] || [ "$reason" = TimeLimit ] ||
       { [ -n "$run" ] && [ -n "$lim" ] && [ "$run" -ge "$lim" ]; }; then
      kd_term=timelimit
      kd_say "SIGTERM at the time limit (Reason=$reason, RunTime ${run:-?} s of ${lim:-?} s): will requeue after the checkpoint"
    else
      kd_term=cancel
      kd_say "SIGTERM before the time limit (Reason=${reason:-?}, RunTime ${run:-?} s of ${lim:-?} s): scancel or preemption, will not requeue"
    fi
  fi
  if [ -n "$kd_child" ]; then
    kd_say "SIG$1 received: asking every rank to checkpoint and exit $KD_EXIT_REQUEUE"
    kill -USR1 "$kd_child" 2>/dev/null
  fi
  return 0
}

# kd_job_run CONFIG [--set key=value ...]
kd_job_run() {
  [ -n "${SLURM_JOB_ID:-}" ] || kd_die "not inside a Slurm job: submit this script with sbatch"
  local jobref=$SLURM_JOB_ID rc
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && jobref=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
  kd_jobref=$jobref
  trap 'kd_on_signal USR1' USR1
  trap 'kd_on_signal TERM' TERM
  [ -n "${kd_early_signal:-}" ] && kd_on_signal "$kd_early_signal"
  [ $# -ge 1 ] || kd_die "usage: sbatch <script> CONFIG [--set key=value ...]"
  local config=$1
  shift
  case "$config" in /*) ;; *) config=${SLURM_SUBMIT_DIR:-$PWD}/$config ;; esac
  [ -f "$config" ] || kd_die "config '$config' not found"
  local worker
  worker=$(kd_find_worker) || exit 1

  # ---- where this job keeps its state ------------------------------------------------
  local name=${SLURM_JOB_NAME:-crosskd}
  local work=${CROSSKD_WORK_DIR:-${CROSSKD_WORK_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}/work_dirs}/$name}
  if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
    work=$work/$SLURM_ARRAY_TASK_ID
  fi
  mkdir -p "$work/logs" || kd_die "cannot create $work/logs"
  work=$(cd "$work" && pwd)
  local log=$work/logs/slurm-$jobref.log restarts=${SLURM_RESTART_COUNT:-0}
  kd_say "job $jobref '$name' (start $((restarts + 1))) on $(hostname): work dir $work, log $log"
  [ -n "${KD_JOB_NOTE:-}" ] && kd_say "$KD_JOB_NOTE"
  exec >>"$log" 2>&1
  kd_say "---- job $jobref, start $((restarts + 1)) (SLURM_RESTART_COUNT=$restarts), $SLURM_NTASKS tasks on ${SLURM_JOB_NUM_NODES:-1} node(s): ${SLURM_JOB_NODELIST:-?}"
  [ -n "${KD_JOB_NOTE:-}" ] && kd_say "$KD_JOB_NOTE"

  # Two running jobs must not share a work dir (same job name twice).
  if [ -f "$work/slurm_job" ]; then
    local other
    other=$(cat "$work/slurm_job")
    if [ "$other" != "$jobref" ] && [ -n "$(squeue -h -j "$other" -t RUNNING,COMPLETING 2>/dev/null)" ]; then
      kd_die "work dir $work is in use by running job $other: give this job another --job-name or set CROSSKD_WORK_DIR"
    fi
  fi
  echo "$jobref" >"$work/slurm_job"

  # The worker keeps its checkpoints in <work dir>/checkpoints/ (iter_<step>.ckpt, latest).
  local ckdir=$work/checkpoints
  if [ -f "$ckdir/latest" ]; then
    kd_say "resume=auto: latest checkpoint is $(cat "$ckdir/latest") in $ckdir"
  else
    kd_say "resume=auto: no checkpoint in $ckdir yet, the worker starts fresh"
  fi

  # ---- the worker's command line ---------------------------------------------------------
  local args=("$config" --set "work_dir=$work" --set resume=auto)
  local sock="" a
  for a in "$@"; do case "$a" in status.socket=*) sock=${a#status.socket=} ;; --set=status.socket=*) sock=${a#--set=status.socket=} ;; esac; done
  if [ -z "$sock" ]; then
    sock=$work/crosskd.sock
    if [ ${#sock} -gt 107 ]; then  # sun_path holds 108 bytes
      sock=/tmp/crosskd-$jobref.sock
      args+=(--set "status.socket=$sock")
    fi
  fi
  if [ -n "${CROSSKD_STATUS_PORT:-}" ]; then
    if [ ! -s "$work/status.token" ]; then
      (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$work/status.token")
    fi
    args+=(--set "status.tcp.host=${CROSSKD_STATUS_HOST:-127.0.0.1}" --set "status.tcp.port=$CROSSKD_STATUS_PORT"
           --set "status.tcp.token_file=$work/status.token")
  fi
  args+=("$@")

  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  local launcher=${CROSSKD_LAUNCHER:-srun} cmd
  # shellcheck disable=SC2206  # CROSSKD_LAUNCH_ARGS is split into words on purpose
  local extra=(${CROSSKD_LAUNCH_ARGS:-})
  case "$launcher" in
    srun)
      # srun does not inherit --cpus-per-task from the batch allocation since Slurm 22.05.
      cmd=(srun --mpi="${CROSSKD_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 --ntasks="$SLURM_NTASKS"
           ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} "${extra[@]}" "$worker" "${args[@]}") ;;
    mpirun)
      # Open MPI reads the allocation (hosts, slots) from Slurm and starts its daemons with
      # srun; it forwards SIGUSR1 to every rank. When one rank exits non-zero (85 too) it
      # aborts the others: SIGTERM, then SIGKILL after odls_base_sigkill_timeout (1 s). The
      # worker's ranks must agree that the checkpoint is on disk before any of them exits;
      # then that is harmless. Raising the timeout delays every such exit by about twice
      # its value (measured with Open MPI 4.1.4).
      cmd=(mpirun -np "$SLURM_NTASKS" --bind-to none "${extra[@]}" "$worker" "${args[@]}") ;;
    *) kd_die "CROSSKD_LAUNCHER='$launcher': use srun or mpirun" ;;
  esac

  kd_say "watch: crosskdctl --socket $sock status   (on $(hostname), where rank 0 runs)"
  kd_say "  from the login node: srun --jobid=$SLURM_JOB_ID --overlap -N1 -n1 -w $(hostname) crosskdctl --socket $sock status"
  if [ -n "${CROSSKD_STATUS_PORT:-}" ]; then
    if [ "${CROSSKD_STATUS_HOST:-127.0.0.1}" = 127.0.0.1 ]; then
      kd_say "  or over TCP: ssh -N -L $CROSSKD_STATUS_PORT:127.0.0.1:$CROSSKD_STATUS_PORT $(hostname) &  crosskdctl --host 127.0.0.1 --port $CROSSKD_STATUS_PORT --token-file $work/status.token status"
    else
      kd_say "  or over TCP: crosskdctl --host $(hostname) --port $CROSSKD_STATUS_PORT --token-file $work/status.token status"
    fi
  fi
  kd_say "launch: ${cmd[*]}"

  # ---- run, forwarding the requeue signals ------------------------------------------------
  if [ -n "$kd_sig" ]; then
    kd_say "SIG$kd_sig arrived before the worker started: not starting it"
    rc=$KD_EXIT_REQUEUE
  else
    "${cmd[@]}" &
    kd_child=$!
    local last=""
    while :; do
      kd_interrupted=0
      wait "$kd_child"
      rc=$?
      # A trapped signal interrupts `wait` with a status above 128: wait again for the real one.
      if [ "$rc" -eq 127 ] && [ -n "$last" ]; then rc=$last; break; fi
      if [ "$kd_interrupted" = 1 ] && [ "$rc" -gt 128 ]; then last=$rc; continue; fi
      break
    done
  fi
  trap - USR1 TERM

  if [ "$rc" -eq 0 ]; then
    kd_say "the worker finished (status 0)"
    exit 0
  fi
  if [ "$kd_term" = cancel ]; then
    kd_say "the worker ended with status $rc after SIGTERM: not requeueing a cancelled or preempted job; resubmit the same command to resume from $work"
    exit "$rc"
  fi
  if [ "$rc" -eq "$KD_EXIT_REQUEUE" ]; then
    kd_say "the worker checkpointed and asks for a requeue (status 85)"
  elif [ -n "$kd_sig" ] && [ "$rc" -gt 128 ]; then
    # E.g. the signal reached a rank before it installed its handler: nothing is lost
    # beyond the latest checkpoint, which the next start resumes from.
    kd_say "the worker was ended by a signal (status $rc) after SIG$kd_sig: requeueing all the same"
  else
    kd_say "the worker failed with status $rc: not requeueing (see the messages above)"
    exit "$rc"
  fi
  local max=${CROSSKD_MAX_REQUEUES:-20}
  if [ "$restarts" -ge "$max" ]; then
    kd_say "this job was already requeued $restarts times (CROSSKD_MAX_REQUEUES=$max): not requeueing; resubmit to continue from $work"
    exit "$rc"
  fi
  kd_say "scontrol requeue $jobref"
  if timeout 60 scontrol requeue "$jobref"; then
    kd_say "requeued: this job starts again later and resumes from $(cat "$ckdir/latest" 2>/dev/null || echo 'the latest checkpoint')"
  else
    kd_say "scontrol requeue $jobref failed (job cancelled, or requeue disabled on this cluster): resubmit the same command to resume from $work"
  fi
  exit "$rc"
}
