#!/usr/bin/env bash
# status_case.sh — one behaviour of the status socket, tested with the real crosskdctl
# against a running fake_job (the trainer stand-in), over real Unix and TCP sockets.
#
#   status_case.sh CASE FAKE_JOB CROSSKDCTL STATUS_PROBE PROM_CHECK
#
# Every wait is a bounded loop; every client call has a timeout; the job is killed on exit.
# Exit 0 when every check of the case held.
set -u
case_name=$1 FAKE=$2 CTL=$3 PROBE=$4 PROM=$5
T=$(mktemp -d "${TMPDIR:-/tmp}/kdstatus.XXXXXX")
JOB_PID= SOCK= PORT= JOB_RC=

cleanup() {
    if [ -n "$JOB_PID" ] && kill -0 "$JOB_PID" 2>/dev/null; then
        kill -9 "$JOB_PID" 2>/dev/null
        wait "$JOB_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$T/job.log" ] && { echo "--- fake_job log:" >&2; tail -20 "$T/job.log" >&2; }
    exit 1
}
ok() { echo "ok   $*"; }

# start_job [fake_job options...]: start, wait for the socket and the first snapshot
start_job() {
    mkdir -p "$T/wd"
    rm -f "$T/ready"
    "$FAKE" --work-dir "$T/wd" --ready-file "$T/ready" --stats-file "$T/stats" "$@" >"$T/job.log" 2>&1 &
    JOB_PID=$!
    for _ in $(seq 100); do
        [ -f "$T/ready" ] && break
        kill -0 "$JOB_PID" 2>/dev/null || fail "fake_job exited at start"
        sleep 0.05
    done
    [ -f "$T/ready" ] || fail "fake_job not ready within 5 s"
    SOCK=$(sed -n 's/^socket=//p' "$T/ready")
    PORT=$(sed -n 's/^tcp_port=//p' "$T/ready")
    for _ in $(seq 100); do
        ctl status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    fail "no status reply within 5 s"
}

ctl() { timeout 30 "$CTL" --socket "$SOCK" "$@"; }
# field KEY < human reply: the value of the first KEY:value line
field() { sed -n "s/^$1://p" | head -n 1; }
iter_now() { ctl status | field iter; }

# wait_job_exit SECONDS: the job must end by itself; its exit status goes to JOB_RC
wait_job_exit() {
    for _ in $(seq $(($1 * 20))); do
        if ! kill -0 "$JOB_PID" 2>/dev/null; then
            wait "$JOB_PID"
            JOB_RC=$?
            JOB_PID=
            return 0
        fi
        sleep 0.05
    done
    fail "the job did not exit within $1 s"
}

# After an attack: the job kept training and its step never waited on the server.
check_unharmed() {
    local before=$1 after
    sleep 0.3
    after=$(iter_now)
    [ -n "$after" ] && [ "$after" -gt "$before" ] || fail "training did not advance ($before -> $after)"
    ok "training advanced during the test ($before -> $after)"
    ctl stop >/dev/null || fail "stop after the test"
    wait_job_exit 10
    [ "$JOB_RC" -eq 0 ] || fail "the job exited with $JOB_RC"
    local ms
    ms=$(sed -n 's/^max_board_ms=//p' "$T/stats")
    awk -v m="$ms" 'BEGIN { exit !(m < 50) }' || fail "a publish/poll took $ms ms"
    ok "the job stopped cleanly; longest publish/poll $ms ms"
}

case "$case_name" in
status-fields)
    start_job --ranks 2
    out=$(ctl status) || fail "status"
    for s in Job Progress Losses Speed Checkpoint Evaluation Ranks; do
        grep -qx "# $s" <<<"$out" || fail "no section # $s"
    done
    for k in name config state world_size uptime_seconds epoch max_epochs iter total_iters \
             iter_in_epoch iters_per_epoch eta_seconds eta loss loss_cls loss_bbox loss_dfl \
             loss_cls_kd loss_reg_kd lr images_per_second data_time_seconds step_time_seconds \
             memory_mb last_checkpoint last_checkpoint_step last_checkpoint_age_seconds \
             last_checkpoint_age last_ap last_eval_step rank0 rank1; do
        grep -q "^$k:" <<<"$out" || fail "no field $k"
    done
    [ "$(field name <<<"$out")" = fake-job ] || fail "name"
    [ "$(field config <<<"$out")" = conf/fake_tiny.yaml ] || fail "config path"
    [ "$(field world_size <<<"$out")" = 2 ] || fail "world_size"
    [ "$(field state <<<"$out")" = running ] || fail "state"
    for r in 0 1; do
        grep -Eq "^rank$r:rank=$r,host=[^,]+,device=cpu,iter=[0-9]+,last_step_seconds=[0-9.e-]+,memory_mb=[0-9.e+]+,state=running$" <<<"$out" ||
            fail "rank$r row: $(grep "^rank$r:" <<<"$out")"
    done
    ok "every section and field present: $(wc -l <<<"$out") lines"
    ;;
status-json)
    start_job --ranks 2
    ctl --json status >"$T/s.json" || fail "status --json"
    [ "$(wc -l <"$T/s.json")" -eq 1 ] || fail "JSON reply is not one line"
    [ "$("$PROBE" json-get job.world_size <"$T/s.json")" = 2 ] || fail "job.world_size"
    [ "$("$PROBE" json-get ranks.1.device <"$T/s.json")" = cpu ] || fail "ranks.1.device"
    [ "$("$PROBE" json-get ranks.1.state <"$T/s.json")" = running ] || fail "ranks.1.state"
    "$PROBE" json-get losses.loss_cls_kd <"$T/s.json" | grep -Eq '^[0-9.e-]+$' || fail "losses.loss_cls_kd"
    "$PROBE" json-get progress.iter <"$T/s.json" | grep -Eq '^[0-9]+$' || fail "progress.iter"
    [ "$("$PROBE" json-get evaluation.last_ap <"$T/s.json")" = null ] || fail "last_ap before any evaluation"
    ok "status --json parses and carries the fields"
    ;;
status-progress)
    start_job --ranks 2 --step-ms 10
    a=$(ctl status)
    sleep 0.6
    b=$(ctl status)
    i1=$(field iter <<<"$a") i2=$(field iter <<<"$b")
    [ "$i2" -gt "$i1" ] || fail "iter did not advance: $i1 -> $i2"
    [ "$(field loss_cls <<<"$a")" != "$(field loss_cls <<<"$b")" ] || fail "loss_cls did not change"
    [ "$(field eta_seconds <<<"$a")" != "$(field eta_seconds <<<"$b")" ] || fail "eta did not change"
    for _ in $(seq 100); do
        c=$(ctl status)
        [ "$(field last_ap <<<"$c")" != none ] && break
        sleep 0.05
    done
    [ "$(field last_ap <<<"$c")" != none ] || fail "no evaluation AP after an epoch"
    [ "$(field epoch <<<"$c")" -ge 2 ] || fail "epoch did not advance"
    ok "iter $i1 -> $i2, losses, ETA, epoch and AP change as training proceeds"
    ;;
watch)
    start_job --step-ms 10
    timeout 20 "$CTL" --socket "$SOCK" watch --interval 0.3 --count 3 >"$T/w.txt" || fail "watch"
    [ "$(grep -c $'\033\\[H\033\\[2J' "$T/w.txt")" -eq 3 ] || fail "3 refreshes in place expected"
    [ "$(grep -c '^# Progress' "$T/w.txt")" -eq 3 ] || fail "3 status frames expected"
    first=$(grep '^iter:' "$T/w.txt" | head -n 1) last=$(grep '^iter:' "$T/w.txt" | tail -n 1)
    [ "$first" != "$last" ] || fail "the frames do not change ($first)"
    ok "watch: 3 frames, cleared in place, $first -> $last"
    ;;
watch-sigint)
    start_job
    "$CTL" --socket "$SOCK" watch --interval 0.2 >"$T/w.txt" &
    w=$!
    sleep 1
    kill -INT "$w"
    for _ in $(seq 40); do kill -0 "$w" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$w" 2>/dev/null && { kill -9 "$w"; fail "watch ignored SIGINT"; }
    wait "$w"
    rc=$?
    [ "$rc" -eq 0 ] || fail "watch exited $rc after SIGINT"
    [ "$(grep -c '^# Progress' "$T/w.txt")" -ge 2 ] || fail "watch did not refresh"
    ok "watch refreshes until SIGINT, then exits 0"
    ;;
checkpoint)
    start_job --ckpt-ms 400
    t0=$(date +%s.%N)
    out=$(ctl checkpoint) || fail "checkpoint"
    path=$(field path <<<"$out")
    [ -n "$path" ] && [ -s "$path" ] || fail "checkpoint file '$path' not on disk when the reply came"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a >= 0.4) }' || fail "reply came before the write finished"
    head -c 17 "$path" | grep -q CROSSKD-FAKE-CKPT || fail "checkpoint content"
    [ "$(cat "$T/wd/latest")" = "$(basename "$path")" ] || fail "latest pointer"
    ls "$T/wd" | grep -q '\.tmp\.' && fail "temporary file left behind"
    [ "$(field state <<<"$out")" = saved ] || fail "state"
    s=$(ctl status)
    [ "$(field last_checkpoint <<<"$s")" = "$path" ] || fail "status does not show the checkpoint"
    [ "$(field last_checkpoint_step <<<"$s")" = "$(field step <<<"$out")" ] || fail "checkpoint step"
    awk -v a="$(field last_checkpoint_age_seconds <<<"$s")" 'BEGIN { exit !(a >= 0 && a < 10) }' ||
        fail "checkpoint age"
    ok "checkpoint answered after $path was on disk; status shows it and its age"
    ;;
checkpoint-coalesce)
    start_job --ckpt-ms 300
    pids=
    for i in 1 2 3; do
        ctl checkpoint >"$T/c$i" &
        pids="$pids $!"
    done
    for p in $pids; do wait "$p" || fail "a checkpoint client failed"; done
    for i in 1 2 3; do
        p=$(field path <"$T/c$i")
        [ -s "$p" ] || fail "client $i: no file ($p)"
    done
    ok "three concurrent checkpoint requests are all answered with files on disk"
    ;;
pause-resume)
    start_job --ranks 3
    out=$(ctl pause) || fail "pause"
    [ "$(field state <<<"$out")" = paused ] || fail "pause reply: $out"
    n=$(field iter <<<"$out")
    s=$(ctl status)
    [ "$(field state <<<"$s")" = paused ] || fail "status state while paused"
    for r in 0 1 2; do
        grep -q "^rank$r:.*,iter=$n,.*state=waiting$" <<<"$s" || fail "rank$r not held at $n: $(grep "^rank$r:" <<<"$s")"
    done
    sleep 1
    s2=$(ctl status)
    [ "$(field iter <<<"$s2")" = "$n" ] || fail "iter moved while paused"
    for r in 0 1 2; do grep -q "^rank$r:.*,iter=$n," <<<"$s2" || fail "rank$r moved while paused"; done
    out=$(ctl resume) || fail "resume"
    [ "$(field state <<<"$out")" = running ] || fail "resume reply: $out"
    sleep 0.5
    [ "$(iter_now)" -gt "$n" ] || fail "no progress after resume"
    ok "pause held all 3 ranks at iteration $n for 1 s; resume continued"
    ;;
stop)
    start_job --ranks 2
    out=$(ctl stop) || fail "stop"
    [ "$(field state <<<"$out")" = stopped ] || fail "stop reply: $out"
    path=$(field path <<<"$out")
    [ -s "$path" ] || fail "no final checkpoint"
    wait_job_exit 10
    [ "$JOB_RC" -eq 0 ] || fail "the job exited with $JOB_RC"
    [ -e "$SOCK" ] && fail "socket file left behind"
    steps=$(sed -n 's/^steps=//p' "$T/stats")
    [ "$(field step <<<"$out")" = "$steps" ] || fail "final checkpoint step $(field step <<<"$out") != last step $steps"
    ok "stop: final checkpoint at step $steps, every rank exited, exit status 0, socket removed"
    ;;
stop-while-paused)
    start_job --ranks 2
    ctl pause >/dev/null || fail "pause"
    out=$(ctl stop) || fail "stop"
    [ -s "$(field path <<<"$out")" ] || fail "no final checkpoint"
    wait_job_exit 10
    [ "$JOB_RC" -eq 0 ] || fail "exit status $JOB_RC"
    ok "stop while paused: final checkpoint and clean exit"
    ;;
config)
    start_job
    out=$(ctl config) || fail "config"
    grep -q "^work_dir: .*$T/wd" <<<"$out" || fail "work_dir not in the effective config"
    grep -q "^status:" <<<"$out" || fail "status section missing"
    ctl --json config >"$T/c.json" || fail "config --json"
    "$PROBE" json-get config.yaml <"$T/c.json" | grep -q "^work_dir: " || fail "config --json"
    ok "config returns the effective YAML ($(wc -l <<<"$out") lines) and its JSON form"
    ;;
metrics)
    start_job --ranks 2
    ctl metrics >"$T/m.prom" || fail "metrics"
    "$PROM" "$T/m.prom" || fail "exposition format"
    grep -q '^crosskd_train_steps_total [0-9]' "$T/m.prom" || fail "steps counter"
    grep -q '^crosskd_loss{term="loss_cls_kd"} ' "$T/m.prom" || fail "loss term"
    grep -q '^crosskd_rank_step_seconds{rank="1"} ' "$T/m.prom" || fail "rank 1"
    grep -q '^crosskd_job_state{state="running"} 1$' "$T/m.prom" || fail "job state"
    ok "metrics: $(grep -vc '^#' "$T/m.prom") samples in valid exposition format"
    ;;
socket-mode)
    start_job
    [ "$SOCK" = "$T/wd/crosskd.sock" ] || fail "default socket path is $SOCK"
    [ -S "$SOCK" ] || fail "not a socket"
    [ "$(stat -c %a "$SOCK")" = 600 ] || fail "mode $(stat -c %a "$SOCK")"
    [ "$(stat -c %u "$SOCK")" = "$(id -u)" ] || fail "owner"
    ls -a "$T/wd" | grep -q '^\.kds' && fail "temporary bind directory left behind"
    ok "socket $SOCK: mode 0600, owned by the job's user"
    ;;
env-and-workdir)
    start_job
    CROSSKD_SOCKET=$SOCK timeout 10 "$CTL" ping | grep -q pong:1 || fail "\$CROSSKD_SOCKET"
    timeout 10 "$CTL" --work-dir "$T/wd" ping | grep -q pong:1 || fail "--work-dir"
    CROSSKD_SOCKET=/nonexistent timeout 10 "$CTL" --work-dir "$T/wd" ping | grep -q pong:1 ||
        fail "--work-dir must override \$CROSSKD_SOCKET"
    ok "the socket is found from \$CROSSKD_SOCKET and from --work-dir"
    ;;
stale-socket)
    start_job
    kill -9 "$JOB_PID"; wait "$JOB_PID" 2>/dev/null; JOB_PID=
    [ -S "$T/wd/crosskd.sock" ] || fail "expected a stale socket after kill -9"
    start_job
    ctl ping | grep -q pong:1 || fail "new job does not serve"
    ok "a stale socket from a killed job is replaced"
    ;;
live-socket)
    start_job
    timeout 10 "$FAKE" --work-dir "$T/wd" >"$T/second.log" 2>&1
    rc=$?
    [ "$rc" -eq 1 ] || fail "second job on the same work_dir exited $rc"
    grep -q "another job is serving it" "$T/second.log" || fail "message: $(cat "$T/second.log")"
    ctl ping | grep -q pong:1 || fail "the first job stopped serving"
    ok "a second job refuses a live socket; the first keeps serving"
    ;;
tcp-token)
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/token"; chmod 600 "$T/token"
    echo wrong-token >"$T/bad"; chmod 600 "$T/bad"
    start_job --tcp-port 0 --token-file "$T/token"
    [ "$PORT" -gt 0 ] || fail "no TCP port"
    out=$(timeout 10 "$CTL" --host 127.0.0.1 --port "$PORT" --token-file "$T/token" status) || fail "TCP status"
    grep -q '^# Progress' <<<"$out" || fail "TCP status reply"
    timeout 10 "$CTL" --host 127.0.0.1 --port "$PORT" --token-file "$T/bad" status 2>"$T/err"
    rc=$?
    [ "$rc" -eq 1 ] && grep -q "ERR EAUTH" "$T/err" || fail "wrong token: exit $rc, $(cat "$T/err")"
    ok "TCP on 127.0.0.1:$PORT serves with the token, refuses a wrong one (exit 1, EAUTH)"
    ;;
tcp-no-auth)
    printf 'secret-%s\n' "$$" >"$T/token"; chmod 600 "$T/token"
    start_job --tcp-port 0 --token-file "$T/token"
    a=tcp:127.0.0.1:$PORT
    "$PROBE" "$a" raw 'status\n' | grep -q '^ERR EAUTH ' || fail "request without AUTH"
    "$PROBE" "$a" raw 'AUTH\n' | grep -q '^ERR EARG ' || fail "AUTH without token"
    "$PROBE" "$a" raw "AUTH secret-$$x\\nping\\n" | grep -q '^ERR EAUTH ' || fail "longer token"
    "$PROBE" "$a" raw "AUTH secret-$$\\nping\\n" | grep -q '^pong:1' || fail "right token"
    ok "TCP requires AUTH <token> before any request"
    ;;
tcp-bad-token-file)
    mkdir -p "$T/wd"
    echo tok >"$T/token"; chmod 644 "$T/token"
    timeout 10 "$FAKE" --work-dir "$T/wd" --tcp-port 0 --token-file "$T/token" >"$T/o" 2>&1
    [ $? -eq 1 ] && grep -q "chmod 600" "$T/o" || fail "0644 token file accepted: $(cat "$T/o")"
    : >"$T/empty"; chmod 600 "$T/empty"
    timeout 10 "$FAKE" --work-dir "$T/wd" --tcp-port 0 --token-file "$T/empty" >"$T/o" 2>&1
    [ $? -eq 1 ] && grep -q "empty" "$T/o" || fail "empty token accepted: $(cat "$T/o")"
    timeout 10 "$FAKE" --work-dir "$T/wd" --tcp-port 0 --token-file "$T/missing" >"$T/o" 2>&1
    [ $? -eq 1 ] && grep -q "token file" "$T/o" || fail "missing token file: $(cat "$T/o")"
    [ -e "$T/wd/crosskd.sock" ] && fail "a failed start left a socket behind"
    ok "token files that others can read, empty or missing are refused at start"
    ;;
exit-codes)
    start_job --ckpt-ms 3000
    "$CTL" --socket "$SOCK" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown verb: not 2"
    "$CTL" --port 1 status >/dev/null 2>&1; [ $? -eq 2 ] || fail "--port alone: not 2"
    "$CTL" --socket "$T/none.sock" status >/dev/null 2>&1; [ $? -eq 3 ] || fail "no socket: not 3"
    # a checkpoint that takes 3 s to write, asked with a 0.3 s client timeout
    "$CTL" --socket "$SOCK" --timeout 0.3 checkpoint >/dev/null 2>"$T/e"; rc=$?
    [ $rc -eq 3 ] && grep -q "in time" "$T/e" || fail "timeout: exit $rc"
    ok "exit status 2 for usage, 3 for no connection or timeout"
    ;;
garbage)
    start_job
    before=$(iter_now)
    timeout 50 "$PROBE" "$SOCK" garbage || fail "garbage"
    check_unharmed "$before"
    ;;
oversized)
    start_job
    before=$(iter_now)
    timeout 50 "$PROBE" "$SOCK" oversized || fail "oversized"
    check_unharmed "$before"
    ;;
tcp-oversized)
    printf 'tok-%s\n' "$$" >"$T/token"; chmod 600 "$T/token"
    start_job --tcp-port 0 --token-file "$T/token"
    before=$(iter_now)
    timeout 50 "$PROBE" "tcp:127.0.0.1:$PORT" oversized || fail "oversized over TCP"
    timeout 50 "$PROBE" "tcp:127.0.0.1:$PORT" garbage | grep -q "one-line EVERB" || fail "garbage over TCP"
    check_unharmed "$before"
    ;;
slow-client)
    start_job --request-timeout 2
    before=$(iter_now)
    timeout 30 "$PROBE" "$SOCK" slow || fail "slow client"
    check_unharmed "$before"
    ;;
noread)
    start_job --ranks 4 --request-timeout 2 --write-timeout 2
    before=$(iter_now)
    timeout 40 "$PROBE" "$SOCK" noread 100 || fail "noread"
    check_unharmed "$before"
    ;;
noread-large)
    start_job --config-pad 900000 --write-timeout 2
    full=$(ctl config | wc -c)
    [ "$full" -gt 900000 ] || fail "config reply is only $full bytes"
    before=$(iter_now)
    timeout 40 "$PROBE" "$SOCK" stall 20 config "$full" 3.5 || fail "stall"
    check_unharmed "$before"
    ;;
many-clients)
    start_job
    before=$(iter_now)
    timeout 40 "$PROBE" "$SOCK" many 300 || fail "many"
    check_unharmed "$before"
    ;;
vanish)
    start_job
    before=$(iter_now)
    timeout 40 "$PROBE" "$SOCK" vanish 100 || fail "vanish"
    check_unharmed "$before"
    ;;
busy)
    start_job --max-clients 50
    before=$(iter_now)
    timeout 40 "$PROBE" "$SOCK" busy 200 50 || fail "busy"
    check_unharmed "$before"
    ;;
finish)
    start_job --steps 40 --step-ms 10
    wait_job_exit 20
    [ "$JOB_RC" -eq 0 ] || fail "exit status $JOB_RC"
    [ -s "$T/wd/ckpt-00000040.bin" ] || fail "no checkpoint at the last step"
    [ -e "$T/wd/crosskd.sock" ] && fail "socket left behind"
    ok "a run that reaches its last step saves, exits 0 and removes its socket"
    ;;
*)
    fail "unknown case $case_name"
    ;;
esac
exit 0
