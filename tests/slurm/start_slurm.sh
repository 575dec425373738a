#!/usr/bin/env bash
# start_slurm.sh STATE_DIR — start a private one-node Slurm cluster (munged, slurmctld,
# slurmd from Debian's packages, see deploy/packages.txt) whose every file lives in
# STATE_DIR, and wait until its node is idle.
#
# On success prints nothing on stdout, exits 0 and leaves STATE_DIR/env to source
# (exports SLURM_CONF, so sbatch/squeue/scontrol talk to this cluster). Exits 77
# (meson's "skipped") with the reason on stderr when Slurm cannot run here: not root,
# packages missing, or a daemon that does not come up (the daemons' log tails follow).
# With CROSSKD_REQUIRE_SLURM=1 those exit 1 instead. Stop it with stop_slurm.sh.
#
# The cluster: one node named after this host, reached on 127.0.0.1 on two free ports;
# SlurmdParameters=config_overrides declares 8 CPUs (whatever the machine has) so a few
# 2-task jobs run at once; no cgroups (proctrack/linuxproc, task/none), no accounting;
# requeued jobs wait cred_expire (the minimum Slurm accepts) before they start again.
set -u
state=${1:?usage: start_slurm.sh STATE_DIR}
# CROSSKD_REQUIRE_SLURM=1 turns every skip into a failure (a CI that must run these tests).
skip() { echo "start_slurm: SKIP: $*" >&2; [ -n "${CROSSKD_REQUIRE_SLURM:-}" ] && exit 1; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd runs jobs as their user and must be root)"
for b in munged mungekey slurmctld slurmd slurmstepd sbatch squeue sinfo scontrol scancel srun; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || skip "'$b' not found: install deploy/packages.txt (bash deploy/install-deps.sh)"
done
PATH=$PATH:/usr/sbin

mkdir -p "$state" || exit 1
state=$(cd "$state" && pwd)
# munged insists that the folders of its socket and key are not writable by others and
# that the socket folder is searchable by all.
chmod 755 "$state"
mkdir -p "$state/munge" "$state/etc" "$state/ctld" "$state/spool" "$state/log"
chmod 755 "$state/munge" "$state/etc"
chmod 700 "$state/ctld" "$state/spool"

node=$(hostname -s 2>/dev/null || hostname)
[ -n "$node" ] || skip "no host name"

# Two free TCP ports (slurmctld, slurmd): not in /proc/net/tcp{,6} in LISTEN state.
listening() { awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print strtonum("0x" a[2]) }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
busy=" $(listening | tr '\n' ' ') "
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    case "$busy" in *" $p "*|*" $((p + 1)) "*) continue ;; esac
    echo "$p"; return 0
  done
  return 1
}
port=$(pick_port) || skip "no free TCP port"
ctld_port=$port slurmd_port=$((port + 1))

# ---- munge ------------------------------------------------------------------------
mungekey --create --keyfile="$state/munge/munge.key" --force >/dev/null 2>"$state/log/mungekey.err" ||
  dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$state/munge/munge.key"
munge_sock=$state/munge/munge.socket
munged -F -f --socket="$munge_sock" --key-file="$state/munge/munge.key" \
  --pid-file="$state/munge/munged.pid" --log-file="$state/log/munged.log" \
  --seed-file="$state/munge/munged.seed" >"$state/log/munged.out" 2>&1 &
echo "munged $!" >"$state/pids"

# ---- slurm.conf ---------------------------------------------------------------------
pmix=none
for d in /usr/lib/*/slurm-wlm /usr/lib/slurm-wlm /usr/lib64/slurm /usr/lib/slurm; do
  [ -e "$d/mpi_pmix.so" ] && { pmix=pmix; break; }
done
cat >"$state/etc/slurm.conf" <<CONF
# Written by tests/slurm/start_slurm.sh: a private one-node cluster for tests.
ClusterName=crosskdtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_sock,cred_expire=5
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/ctld/slurmctld.pid
SlurmdPidFile=$state/spool/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=$pmix
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
SlurmdParameters=config_overrides
MailProg=/bin/true
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=8 Boards=1 SocketsPerBoard=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=1000 Gres=gpu:8 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
# 8 pretend GPUs (character devices with the numbers of /dev/null): lets the batch scripts'
# --gpus-per-node lines be scheduled as written; jobs see CUDA_VISIBLE_DEVICES, no GPU.
mkdir -p "$state/dev"
for i in 0 1 2 3 4 5 6 7; do mknod "$state/dev/gpu$i" c 1 3 2>/dev/null || : >"$state/dev/gpu$i"; done
cat >"$state/etc/gres.conf" <<CONF
AutoDetect=off
NodeName=$node Name=gpu File=$state/dev/gpu[0-7]
CONF
cat >"$state/etc/cgroup.conf" <<CONF
# No cgroups in the test cluster (proctrack/linuxproc, task/none).
CgroupPlugin=autodetect
IgnoreSystemd=yes
CONF
export SLURM_CONF=$state/etc/slurm.conf
printf 'export SLURM_CONF=%q\nexport PATH="$PATH:/usr/sbin"\n' "$SLURM_CONF" >"$state/env"

fail() {
  echo "start_slurm: $*" >&2
  for f in munged.log slurmctld.log slurmd.log munged.out slurmctld.out slurmd.out; do
    [ -s "$state/log/$f" ] && { echo "--- $f (tail)" >&2; tail -n 15 "$state/log/$f" >&2; }
  done
  bash "$(dirname "${BASH_SOURCE[0]}")/stop_slurm.sh" "$state" >/dev/null 2>&1
  [ -n "${CROSSKD_REQUIRE_SLURM:-}" ] && exit 1
  exit 77
}

for _ in $(seq 1 50); do [ -S "$munge_sock" ] && break; sleep 0.1; done
[ -S "$munge_sock" ] || fail "SKIP: munged did not start"

# ---- slurmctld, slurmd ------------------------------------------------------------------
slurmctld -D -c -f "$SLURM_CONF" >"$state/log/slurmctld.out" 2>&1 &
echo "slurmctld $!" >>"$state/pids"
for _ in $(seq 1 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
scontrol ping >/dev/null 2>&1 || fail "SKIP: slurmctld did not answer within 10 s"
slurmd -D -f "$SLURM_CONF" -N "$node" >"$state/log/slurmd.out" 2>&1 &
echo "slurmd $!" >>"$state/pids"

for _ in $(seq 1 300); do
  st=$(sinfo -h -N -o '%t' 2>/dev/null | head -n1)
  case "$st" in idle) exit 0 ;; esac
  sleep 0.1
done
fail "SKIP: the node did not become idle within 30 s (state '${st:-none}')"
