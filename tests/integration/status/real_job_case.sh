#!/usr/bin/env bash
# real_job_case.sh — the status socket of a REAL training job (crosskd-worker under
# mpirun -np 2 on the micro config and a generated dataset), issue #9:
#
#   real_job_case.sh CASE WORKER GEN CROSSKDCTL STATUS_PROBE PROM_CHECK CKPT_TOOL CONFIG
#
#   verbs   every crosskdctl verb against the job: status (text and --json), watch, metrics
#           (exposition format), config, ping, checkpoint, pause (every rank held at the
#           same iteration), resume, stop (exit 0); the socket is 0600 and owned by the
#           job's user; another uid is refused (by the mode, and with CAP_DAC_OVERRIDE by
#           the peer-uid check; this part needs root and setpriv, else it is skipped)
#   robust  the misbehaving clients of status_probe while the job trains: garbage bytes,
#           oversized lines, a half-sent request sent one byte a second, 200 clients that
#           never read (half of them silent), 200 clients at once, clients that vanish;
#           afterwards the job is still training, stops cleanly, and its per-step losses
#           (scalars.jsonl: lr and every loss term) and its weights and momentum at the
#           stop are identical to those of an undisturbed run of the same config and seed
#           to the same iteration.
# Every wait is bounded; every job is killed on exit.
set -u
case_name=$1 worker=$2 gen=$3 CTL=$4 PROBE=$5 PROM=$6 TOOL=$7 config=$8
T=$(mktemp -d "${TMPDIR:-/tmp}/kdreal.XXXXXX")
JOB=
cleanup() {
    [ -n "$JOB" ] && kill -9 "$JOB" 2>/dev/null
    pkill -9 -f "work_dir=$T/" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail() { echo "FAIL: $*"; [ -f "$T/job.log" ] && tail -20 "$T/job.log"; exit 1; }
ok() { echo "ok   $*"; }
"$gen" --out "$T/data" --train 8 --val 4 --size-min 64 --size-max 96 --categories 3 --seed 3 --no-progress || exit 1

# every step logged, no checkpoint or evaluation until the end: a long, steady job
common=(--set data_root="$T/data" --set default_hooks.logger.interval=1 --set default_hooks.checkpoint.interval=1000000)
start_job() { # WORKDIR [--set ...]: start in the background, wait for the socket and a logged step
    local wd=$1; shift
    timeout 300 mpirun --oversubscribe -np 2 --mca btl self,vader,tcp "$worker" "$config" "${common[@]}" \
        --set work_dir="$wd" "$@" > "$T/job.log" 2>&1 &
    JOB=$!
    SOCK="$wd/crosskd.sock"
    for _ in $(seq 600); do
        [ -S "$SOCK" ] && grep -q "Epoch(train)" "$T/job.log" && return 0
        kill -0 "$JOB" 2>/dev/null || fail "the job exited at start"
        sleep 0.05
    done
    fail "no socket or no training step within 30 s"
}
ctl() { timeout 30 "$CTL" --socket "$SOCK" "$@"; }
field() { sed -n "s/^$1://p" | head -n 1; }
iter_now() { ctl status | field iter; }
wait_exit() { # the job must end by itself within 60 s; its status goes to RC
    for _ in $(seq 1200); do
        if ! kill -0 "$JOB" 2>/dev/null; then wait "$JOB"; RC=$?; JOB=; return 0; fi
        sleep 0.05
    done
    fail "the job did not exit within 60 s"
}
# iter, lr and every loss term of each logged step up to iteration $2 (timings dropped)
losses() { sed -n 's/.*"iter":\([0-9]*\),\("lr":[^,]*\),.*\("loss":.*\)}$/\1 \2 \3/p' "$1" | awk -v max="$2" '$1 <= max'; }

case "$case_name" in
verbs)
    start_job "$T/wd" --set train_cfg.max_iters=100000000
    [ "$(stat -c %a "$SOCK")" = 600 ] || fail "socket mode $(stat -c %a "$SOCK")"
    [ "$(stat -c %u "$SOCK")" = "$(id -u)" ] || fail "socket owner"
    out=$(ctl status) || fail "status"
    for want in "state:running" "world_size:2" "loss_cls:" "rank0:rank=0" "rank1:rank=1" "# Speed"; do
        grep -q "$want" <<<"$out" || fail "status lacks $want"
    done
    ctl --json status > "$T/s.json" || fail "status --json"
    [ "$("$PROBE" json-get job.world_size < "$T/s.json")" = 2 ] || fail "status --json: job.world_size"
    "$PROBE" json-get losses.loss_cls < "$T/s.json" | grep -Eq '^[0-9.e-]+$' || fail "status --json: losses.loss_cls"
    ok "status and status --json"
    ctl ping | grep -q '^pong:1' || fail "ping"
    timeout 20 "$CTL" --socket "$SOCK" watch --interval 0.2 --count 3 > "$T/w.txt" || fail "watch"
    [ "$(grep -c '^# Progress' "$T/w.txt")" -eq 3 ] || fail "watch: 3 frames expected"
    [ "$(grep '^iter:' "$T/w.txt" | head -n 1)" != "$(grep '^iter:' "$T/w.txt" | tail -n 1)" ] || fail "watch: frames do not change"
    ok "ping; watch refreshes 3 times while iterations advance"
    ctl metrics > "$T/m.prom" || fail "metrics"
    "$PROM" "$T/m.prom" > /dev/null || fail "metrics exposition format"
    grep -q '^crosskd_train_steps_total [0-9]' "$T/m.prom" || fail "metrics: steps counter"
    grep -q '^crosskd_rank_step_seconds{rank="1"} ' "$T/m.prom" || fail "metrics: rank 1"
    ok "metrics: $(grep -vc '^#' "$T/m.prom") samples, valid exposition format"
    ctl config > "$T/c.yaml" || fail "config"
    grep -q "^work_dir: $T/wd" "$T/c.yaml" || fail "config: work_dir"
    cmp -s "$T/c.yaml" "$T/wd/config.yaml" || fail "config reply differs from the job's config.yaml"
    ok "config is the job's effective config"
    out=$(ctl checkpoint) || fail "checkpoint"
    [ -s "$(field path <<<"$out")" ] || fail "checkpoint: no file"
    out=$(ctl pause) || fail "pause"
    n=$(field iter <<<"$out")
    sleep 0.5
    s=$(ctl status)
    [ "$(field iter <<<"$s")" = "$n" ] || fail "iterations advanced while paused"
    for r in 0 1; do grep -q "^rank$r:.*,iter=$n,.*state=waiting$" <<<"$s" || fail "rank $r not held at $n"; done
    ctl resume > /dev/null || fail "resume"
    sleep 0.3
    [ "$(iter_now)" -gt "$n" ] || fail "no progress after resume"
    ok "checkpoint; pause held both ranks at iteration $n; resume"
    if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
        as_other=(setpriv --reuid=65534 --regid=65534 --clear-groups)
        timeout 10 "${as_other[@]}" "$CTL" --socket "$SOCK" status > /dev/null 2>&1
        [ $? -eq 3 ] || fail "another uid could connect to the 0600 socket"
        timeout 10 "${as_other[@]}" --inh-caps=+dac_override --ambient-caps=+dac_override \
            "$CTL" --socket "$SOCK" status > /dev/null 2> "$T/e"
        rc=$?
        [ $rc -eq 1 ] && grep -q "ERR EPERM" "$T/e" || fail "uid 65534 with DAC override: exit $rc, $(cat "$T/e")"
        ok "uid 65534 refused: by the socket mode, and by the peer-uid check (ERR EPERM)"
    else
        echo "skip the other-uid check (needs root and setpriv)"
    fi
    out=$(ctl stop) || fail "stop"
    [ "$(field state <<<"$out")" = stopped ] && [ -s "$(field path <<<"$out")" ] || fail "stop reply: $out"
    wait_exit
    [ "$RC" -eq 0 ] || fail "exit status $RC after stop"
    [ -e "$SOCK" ] && fail "socket left behind"
    ok "stop: final checkpoint, exit 0, socket removed"
    ;;
robust)
    start_job "$T/hit" --set train_cfg.max_iters=100000000
    before=$(iter_now)
    for probe in "garbage" "oversized" "slow" "noread 100" "many 200" "vanish 50"; do
        timeout 60 "$PROBE" "$SOCK" $probe > "$T/probe.out" 2>&1 || { cat "$T/probe.out"; fail "probe $probe"; }
        kill -0 "$JOB" 2>/dev/null || fail "the job died during probe $probe"
        ok "probe $probe: $(grep -c '^ok' "$T/probe.out") checks held"
    done
    after=$(iter_now)
    [ -n "$after" ] && [ "$after" -gt "$before" ] || fail "training did not advance ($before -> $after)"
    out=$(ctl stop) || fail "stop"
    wait_exit
    [ "$RC" -eq 0 ] || fail "exit status $RC after stop"
    last=$(field step <<<"$out")
    ok "the job trained through the attacks ($before -> $after) and stopped at iteration $last"
    start_job "$T/calm" --set train_cfg.max_iters="$last"
    wait_exit
    [ "$RC" -eq 0 ] || fail "the undisturbed run exited $RC"
    losses "$T/hit/logs/scalars.jsonl" "$last" > "$T/hit.losses"
    losses "$T/calm/logs/scalars.jsonl" "$last" > "$T/calm.losses"
    [ "$(wc -l < "$T/calm.losses")" -eq "$last" ] || fail "the undisturbed run logged $(wc -l < "$T/calm.losses") of $last steps"
    cmp -s "$T/hit.losses" "$T/calm.losses" || { diff "$T/hit.losses" "$T/calm.losses" | head -5; fail "loss sequences differ"; }
    "$TOOL" compare "$T/hit/checkpoints/iter_$last.ckpt" "$T/calm/checkpoints/iter_$last.ckpt" 0 ||
        fail "weights differ from the undisturbed run"
    ok "$last steps: lr, every loss term and the final weights identical to the undisturbed run"
    ;;
*) fail "unknown case $case_name" ;;
esac
exit 0
