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
# Ours: the recorded pid still runs the recorded daemon (never a reused pid).
ours() { [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }
if [ -f "$state/pids" ]; then
  # All three at once (each takes 1-2 s to exit), then SIGKILL what is left after 5 s.
  while read -r name pid; do ours "$name" "$pid" && kill -TERM "$pid" 2>/dev/null; done <"$state/pids"
  for _ in $(seq 1 50); do
    alive=""
    while read -r name pid; do ours "$name" "$pid" && alive="$alive $name($pid)"; done <"$state/pids"
    [ -z "$alive" ] && break
    sleep 0.1
  done
  while read -r name pid; do
    ours "$name" "$pid" && { echo "stop_slurm: $name ($pid) ignored SIGTERM, killing" >&2; kill -KILL "$pid" 2>/dev/null; }
  done <"$state/pids"
  rm -f "$state/pids"
fi
exit 0
