#!/usr/bin/env bash
# stop_slurm.sh STATE_DIR — stop the cluster start_slurm.sh started in STATE_DIR: cancel
# its jobs, wait (bounded) for their steps to end, then end slurmd, slurmctld and munged
# by the process ids recorded in STATE_DIR/pids. Safe to call twice or on a failed start.
set -u
state=${1:?usage: stop_slurm.sh STATE_DIR}
[ -d "$state" ] || exit 0
PATH=$PATH:/usr/sbin
if [ -f "$state/etc/slurm.conf" ] && [ -f "$state/pids" ]; then
  export SLURM_CONF=$state/etc/slurm.conf
  if timeout 5 scontrol ping >/dev/null 2>&1; then
    jobs=$(timeout 5 squeue -h -o '%A' 2>/dev/null | sort -u)
    # shellcheck disable=SC2086
    [ -n "$jobs" ] && timeout 5 scancel $jobs >/dev/null 2>&1
    for _ in $(seq 1 150); do
      [ -z "$(timeout 5 squeue -h -o '%A' 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  # Steps still running have a socket in the spool folder: let slurmd see them end.
  for _ in $(seq 1 50); do
    compgen -G "$state/spool/*_[0-9]*.[0-9]*" >/dev/null || break
    sleep 0.1
  done
fi
if [ -f "$state/pids" ]; then
  # Reverse start order: slurmd, slurmctld, munged.
  tac "$state/pids" | while read -r name pid; do
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { echo "stop_slurm: $name ($pid) ignored SIGTERM, killing" >&2; kill -KILL "$pid" 2>/dev/null; }
  done
  rm -f "$state/pids"
fi
exit 0
