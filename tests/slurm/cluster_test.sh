#!/usr/bin/env bash
# Real-cluster test of `--launcher slurm` (docs/slurm.md): starts a throw-away single-node SLURM
# cluster (munged with a private key and socket, slurmctld, slurmd -N localhost; toolchain.md §7)
# in a temporary directory, runs the scenarios against it, and stops every daemon by PID at the
# end, also on failure. Needs root and the slurm-wlm + munge packages; when the daemons cannot
# start, the test FAILS (it never skips).
#
# usage: cluster_test.sh ZSAD_BINARY SOURCE_DIR [--keep] [GROUP...]
#   GROUP: core (scenarios 1-4), requeue (5a-5d), demo (6, 6b, 7, 8); none = all. ctest runs one entry per
#   group (slurm_cluster_<group>), each on its own cluster, so each stays within the 3-minute budget.
set -uo pipefail

ZSAD=${1:-${ZSAD_BINARY:-}}
SRC=${2:-${ZSAD_SOURCE_DIR:-}}
KEEP="" GROUPS_WANTED=""
for a in "${@:3}"; do
  if [ "$a" = --keep ]; then KEEP=--keep; else GROUPS_WANTED="${GROUPS_WANTED:+$GROUPS_WANTED }$a"; fi
done
for g in $GROUPS_WANTED; do
  case $g in core|requeue|demo) ;; *) echo "FAIL: unknown scenario group '$g' (expected core, requeue or demo)" >&2; exit 1 ;; esac
done
want() { [ -z "$GROUPS_WANTED" ] || [[ " $GROUPS_WANTED " == *" $1 "* ]]; }
[ -n "$ZSAD" ] && [ -x "$ZSAD" ] || { echo "FAIL: zsad binary '$ZSAD' not executable" >&2; exit 1; }
[ -n "$SRC" ] && [ -d "$SRC/experiments" ] || { echo "FAIL: source dir '$SRC' has no experiments/" >&2; exit 1; }
ZSAD=$(readlink -f "$ZSAD")
EXP="$SRC/experiments/example_shell.yaml"

fail() { echo "FAIL: $*" >&2; FAILED=1; exit 1; }
note() { echo "[cluster_test $(date +%H:%M:%S)] $*"; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (slurmd runs jobs as any user; see docs/slurm.md)"
for b in munged munge unmunge slurmctld slurmd sbatch squeue scontrol scancel sinfo; do
  command -v "$b" >/dev/null || fail "'$b' not found: install slurm-wlm and munge (scripts/install-deps.sh)"
done
getent passwd munge >/dev/null || fail "no 'munge' user (the munge package creates it)"

W=$(mktemp -d /tmp/zsad-slurm-test.XXXXXX)
chmod 0755 "$W"
FAILED=0

dump_logs() {
  for f in "$W"/munge/log/munged.log "$W"/slurm/log/slurmctld.log "$W"/slurm/log/slurmd.*.log; do
    [ -f "$f" ] || continue
    echo "----- tail $f -----" >&2
    tail -n 30 "$f" >&2
  done
}

pid_of() { [ -f "$1" ] && cat "$1" 2>/dev/null; }

stop_cluster() {
  local rc=$?
  [ "$FAILED" -ne 0 ] && rc=1
  [ "$rc" -ne 0 ] && dump_logs
  local pids=()
  local p
  for f in "$W"/slurm/run/slurmd.*.pid "$W"/slurm/run/slurmctld.pid "$W"/munge/run/munged.pid; do
    p=$(pid_of "$f") || true
    [ -n "${p:-}" ] && kill -0 "$p" 2>/dev/null && pids+=("$p")
  done
  # slurmd and slurmctld first (they talk to munged), munged last.
  for p in "${pids[@]}"; do
    [ "$p" = "$(pid_of "$W/munge/run/munged.pid")" ] && continue
    kill -TERM "$p" 2>/dev/null
  done
  for _ in $(seq 100); do
    local alive=0
    for p in "${pids[@]}"; do
      [ "$p" = "$(pid_of "$W/munge/run/munged.pid")" ] && continue
      kill -0 "$p" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  p=$(pid_of "$W/munge/run/munged.pid") || true
  if [ -n "${p:-}" ] && kill -TERM "$p" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      echo "cluster_test: pid $p still alive after SIGTERM; SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null
      rc=1
    fi
  done
  if [ "$rc" -eq 0 ] && [ "$KEEP" != "--keep" ]; then rm -rf "$W"; else echo "cluster_test: files kept in $W" >&2; fi
  [ "$rc" -eq 0 ] && echo "cluster_test: PASS" || echo "cluster_test: FAIL" >&2
  exit "$rc"
}
trap stop_cluster EXIT
trap 'exit 1' INT TERM

# Two free TCP ports for slurmctld/slurmd (not the default 6817/6818: a real cluster may use them).
port_free() { [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }
CTLD_PORT=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 20000))
  if port_free "$p" && port_free $((p + 1)); then CTLD_PORT=$p; break; fi
done
[ -n "$CTLD_PORT" ] || fail "no free port pair found"
SLURMD_PORT=$((CTLD_PORT + 1))

# ---------------------------------------------------------------- start the cluster
mkdir -p "$W"/munge/{run,log,lib,etc} "$W"/slurm/{etc,state,spool/slurmd.localhost,run,log} "$W"/out
dd if=/dev/urandom of="$W/munge/etc/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$W/munge"
chmod 0755 "$W/munge" "$W/munge/run"
chmod 0700 "$W/munge/log" "$W/munge/lib" "$W/munge/etc"
chmod 0400 "$W/munge/etc/munge.key"
SOCK="$W/munge/run/munge.socket.2"
runuser -u munge -- /usr/sbin/munged --socket="$SOCK" --key-file="$W/munge/etc/munge.key" \
  --pid-file="$W/munge/run/munged.pid" --log-file="$W/munge/log/munged.log" \
  --seed-file="$W/munge/lib/munged.seed" || fail "munged did not start"
munge -n -S "$SOCK" | unmunge -S "$SOCK" | grep -q 'STATUS: *Success' || fail "munge round trip failed"

export SLURM_CONF="$W/slurm/etc/slurm.conf"
# cred_expire: a requeued job waits this long before it may start again (default 120 s).
cat > "$SLURM_CONF" <<EOF
ClusterName=zsadtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK,cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
ReturnToService=2
KillWait=10
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$W/slurm/state
SlurmdSpoolDir=$W/slurm/spool/slurmd.%n
SlurmctldPidFile=$W/slurm/run/slurmctld.pid
SlurmdPidFile=$W/slurm/run/slurmd.%n.pid
SlurmctldLogFile=$W/slurm/log/slurmctld.log
SlurmdLogFile=$W/slurm/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" -N localhost || fail "slurmd did not start"
for _ in $(seq 100); do
  sinfo -h -o %T 2>/dev/null | grep -q idle && break
  sleep 0.2
done
sinfo -h -o %T | grep -q idle || fail "node localhost never became idle: $(sinfo -h -o '%T %E' 2>&1)"
note "cluster up in $W (ports $CTLD_PORT/$SLURMD_PORT)"

export ZSAD_OUTPUT_ROOT="$W/out"
cd "$W/out" || fail "cd $W/out"

# ---------------------------------------------------------------- helpers
# json_get JSON PYTHON_EXPR: evaluates EXPR over the parsed JSON `d`.
json_get() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1"; }

# wait_state DIR STATE COUNT TIMEOUT: until `zsad status DIR` counts COUNT jobs in STATE.
wait_state() {
  local dir=$1 state=$2 count=$3 timeout=$4 s=""
  local deadline=$((SECONDS + timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    s=$("$ZSAD" status "$dir" --json) || fail "zsad status $dir failed"
    [ "$(json_get "$s" "d['counts'].get('$state', 0)")" = "$count" ] && return 0
    sleep 0.25
  done
  "$ZSAD" status "$dir" >&2
  fail "timeout: $dir did not reach $count x $state within $timeout s"
}

if want core; then
# ---------------------------------------------------------------- 1. sbatch --test-only
note "scenario 1: sbatch --test-only accepts rendered scripts the node can hold"
accept() {  # accept NAME OVERRIDES...: dry-run script must pass --test-only
  local name=$1; shift
  "$ZSAD" sweep "$EXP" "$@" --launcher slurm --dry-run > "$W/$name.sbatch" || fail "$name: dry-run failed"
  grep -q '^#SBATCH --array=' "$W/$name.sbatch" || fail "$name: no --array directive"
  sbatch --test-only "$W/$name.sbatch" > "$W/$name.testonly" 2>&1 ||
    fail "$name: sbatch --test-only rejected it: $(cat "$W/$name.testonly")"
  grep -q 'to start at' "$W/$name.testonly" || fail "$name: unexpected --test-only output: $(cat "$W/$name.testonly")"
}
accept one_rank seed=0,1,2,3
accept two_ranks seed=0,1 slurm.ntasks_per_node=2
accept two_cpus seed=0,1 slurm.cpus_per_task=2 'slurm.time=0-00:10:00' slurm.array_parallelism=1
accept extras seed=0 slurm.partition=debug slurm.mem=100M "slurm.extra=['comment=zsad']" "slurm.setup=['echo setup']"
# A shape this node cannot hold must be rejected (the check above is not vacuous).
"$ZSAD" sweep "$EXP" seed=0 --launcher slurm slurm.nodes=4 slurm.ntasks_per_node=8 --dry-run > "$W/big.sbatch" ||
  fail "big: dry-run failed"
sbatch --test-only "$W/big.sbatch" > "$W/big.testonly" 2>&1 &&
  fail "4 nodes x 8 tasks accepted by a 1-node, 2-CPU cluster: $(cat "$W/big.testonly")"

# ---------------------------------------------------------------- 2. 4-job sweep as a job array
note "scenario 2: 4-job sweep as one job array"
out=$("$ZSAD" sweep "$EXP" seed=0,1,2,3 --launcher slurm slurm.array_parallelism=2 2>&1) || fail "sweep submit: $out"
echo "$out"
SWEEP=$(echo "$out" | sed -n 's/^sweep \(.*\): 4 jobs$/\1/p')
[ -d "$SWEEP" ] || fail "sweep dir not found in output: $out"
ARRAY_ID=$(echo "$out" | sed -n 's/^submitted job array \([0-9]*\) .*/\1/p')
[ -n "$ARRAY_ID" ] || fail "no job array id in output"
echo "$out" | grep -q -- '--array=0-3%2' || fail "expected --array=0-3%2 in: $out"
grep -q "\"job_id\":\"$ARRAY_ID\"" "$SWEEP/.slurm/submissions.jsonl" || fail "job id not recorded in submissions.jsonl"
wait_state "$SWEEP" completed 4 120
st=$("$ZSAD" status "$SWEEP") || fail "zsad status"
echo "$st"
echo "$st" | grep -q "4 jobs, 4 completed" || fail "status text does not say 4 completed"
for i in 0 1 2 3; do
  grep -q "seed=$i " "$SWEEP/$i/result.txt" || fail "job $i: result.txt lacks seed=$i: $(cat "$SWEEP/$i/result.txt" 2>&1)"
  grep -Eq "slurm_job_id: [\"']?${ARRAY_ID}_$i[\"']?$" "$SWEEP/$i/.zsad/job.yaml" || fail "job $i: job.yaml lacks slurm_job_id ${ARRAY_ID}_$i"
  grep -q "exit_code: 0" "$SWEEP/$i/.zsad/job.yaml" || fail "job $i: exit_code not 0"
  grep -Eq "^  task: [\"']?shell" "$SWEEP/$i/.zsad/job.yaml" || fail "job $i: job.yaml lacks the group choices (task: shell)"
  [ -f "$SWEEP/.slurm/${ARRAY_ID}_$i.out" ] || fail "job $i: batch log ${ARRAY_ID}_$i.out missing"
done

# ---------------------------------------------------------------- 2b. resume resubmits what failed
note "scenario 2b: a failed array element is resubmitted alone by zsad sweep --resume"
out=$("$ZSAD" sweep "$EXP" seed=0,1,2 "task.command=test -f $W/ok || test \${seed} -ne 1" --launcher slurm 2>&1) ||
  fail "sweep submit: $out"
RS=$(echo "$out" | sed -n 's/^sweep \(.*\): 3 jobs$/\1/p')
[ -d "$RS" ] || fail "sweep dir not found in output: $out"
RS_ID=$(echo "$out" | sed -n 's/^submitted job array \([0-9]*\) .*/\1/p')
wait_state "$RS" failed 1 60
wait_state "$RS" completed 2 60
st=$("$ZSAD" status "$RS")
echo "$st"
echo "$st" | grep -qF "failed: job 1 (exit 1): $RS/1/run.log, $RS/.slurm/${RS_ID}_1.out, $RS/.slurm/${RS_ID}_1.err" ||
  fail "status does not name the failed job's logs"
touch "$W/ok"
out=$("$ZSAD" sweep --resume "$RS" 2>&1) || fail "resume: $out"
echo "$out"
echo "$out" | grep -q -- '--array=1%1, 1 jobs' || fail "resume did not resubmit only job 1"
wait_state "$RS" completed 3 60
[ "$(wc -l < "$RS/.slurm/submissions.jsonl")" = 2 ] || fail "expected 2 submission records"

# ---------------------------------------------------------------- 3. 2-task job via zsad run
note "scenario 3: zsad run --launcher slurm, 2 tasks"
out=$("$ZSAD" run "$EXP" task=echo launcher.nproc=2 seed=5 --launcher slurm 2>&1) || fail "run submit: $out"
echo "$out"
RUN=$(echo "$out" | sed -n 's/^zsad run: \(\/.*\)$/\1/p')
[ -d "$RUN" ] || fail "run dir not found in output"
wait_state "$RUN" completed 1 60
grep -q "rank 0/2 job -1 experiment=example_shell seed=5" "$RUN/run.log" || fail "rank 0 line missing: $(cat "$RUN/run.log")"
grep -q "rank 1/2 job -1 experiment=example_shell seed=5" "$RUN/run.log" || fail "rank 1 line missing: $(cat "$RUN/run.log")"
grep -q -- "--ntasks-per-node=2" "$RUN"/.slurm/submit_0.sbatch || fail "script lacks --ntasks-per-node=2"

# ---------------------------------------------------------------- 4. failure is reported with logs
note "scenario 4: a failing job is reported as failed with its logs"
out=$("$ZSAD" run "$EXP" 'task.command=echo boom; exit 3' --launcher slurm 2>&1) || fail "run submit: $out"
FRUN=$(echo "$out" | sed -n 's/^zsad run: \(\/.*\)$/\1/p')
[ -d "$FRUN" ] || fail "run dir not found in output"
wait_state "$FRUN" failed 1 60
st=$("$ZSAD" status "$FRUN")
echo "$st"
echo "$st" | grep -q "failed: job - (exit 3): $FRUN/run.log" || fail "failed job's log path not shown"
grep -q boom "$FRUN/run.log" || fail "run.log lacks the job's output"

fi  # core

# ---------------------------------------------------------------- 5. preemption: USR2 -> checkpoint -> requeue -> resume
# (`exec`: SLURM signals every process of the task, so the /bin/sh -c in between must not stay.)
# A shell task that counts to 40 in 0.1 s steps, keeps its progress in a file ("checkpoint"), and
# on SIGUSR2/SIGTERM saves it and exits 75 (what the trainer does with its HDF5 checkpoints).
cat > "$W/counter.sh" <<'EOF'
n=$(cat progress 2>/dev/null || echo 0)
echo "start at $n restart=${SLURM_RESTART_COUNT:-0}"
trap 'echo $n > progress; echo "checkpoint at $n"; exit 75' USR2 TERM
while [ $n -lt 40 ]; do echo $((n + 1)) >> steps; n=$((n + 1)); sleep 0.1; done
echo $n > progress
echo "done $n" > result.txt
EOF
submit_counter() {  # submit_counter EXTRA_OVERRIDES... -> prints run dir, sets JOBID
  local o
  o=$("$ZSAD" run "$EXP" "task.command=exec sh $W/counter.sh" --launcher slurm "$@" 2>&1) || fail "counter submit: $o"
  echo "$o" | sed -n 's/^zsad run: \(\/.*\)$/\1/p'
}
wait_progress() {  # wait_progress DIR: until the task has counted a few steps
  local deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ -f "$1/steps" ] && [ "$(wc -l < "$1/steps")" -ge 5 ] && return 0
    sleep 0.1
  done
  fail "$1: the task never started counting"
}
job_id_of() { sed -n 's/^slurm_job_id: //p' "$1/.zsad/job.yaml" | tr -d "'\""; }

if want requeue; then
note "scenario 5a: scancel --signal=USR2 -> requeue -> resume -> complete"
PRE=$(submit_counter)
[ -d "$PRE" ] || fail "counter job not submitted"
wait_progress "$PRE"
JID=$(job_id_of "$PRE")
scancel --signal=USR2 "$JID" || fail "scancel --signal=USR2 $JID"
wait_state "$PRE" completed 1 90
cat "$PRE/run.log"
grep -q "checkpoint at" "$PRE/run.log" || fail "no checkpoint after USR2"
grep -q "start at 0 restart=0" "$PRE/run.log" || fail "first start missing"
grep -Eq "start at [1-9][0-9]* restart=1" "$PRE/run.log" || fail "the requeued run did not resume from the checkpoint"
grep -q "done 40" "$PRE/result.txt" || fail "result differs from an uninterrupted run"
# Every step counted exactly once across the interruption (resume, not restart from scratch).
[ "$(sort -n "$PRE/steps" | uniq | wc -l)" = 40 ] && [ "$(wc -l < "$PRE/steps")" -le 41 ] ||
  fail "steps were repeated or lost: $(tr '\n' ' ' < "$PRE/steps")"
grep -q "slurm_restarts: 1" "$PRE/.zsad/job.yaml" || fail "job.yaml lacks slurm_restarts: 1"
grep -q "requeue 1/3" "$PRE/.slurm/$JID.out" || fail "wrapper did not log the requeue"

note "scenario 5b: scancel (SIGTERM) -> checkpoint -> stopped, not requeued"
STP=$(submit_counter)
[ -d "$STP" ] || fail "counter job not submitted"
wait_progress "$STP"
JID=$(job_id_of "$STP")
scancel "$JID" || fail "scancel $JID"
wait_state "$STP" stopped 1 60
sleep 3
squeue -h -j "$JID" 2>/dev/null | grep -q . && fail "cancelled job $JID is queued again"
grep -q "checkpoint at" "$STP/run.log" || fail "no checkpoint after SIGTERM"
grep -q "restart=1" "$STP/run.log" && fail "cancelled job was restarted"
grep -q "exit_code: 75" "$STP/.zsad/job.yaml" || fail "stopped job's exit code is not 75"

note "scenario 5c: requeue cap (slurm.max_requeues=0) -> stopped"
CAP=$(submit_counter slurm.max_requeues=0)
[ -d "$CAP" ] || fail "counter job not submitted"
wait_progress "$CAP"
JID=$(job_id_of "$CAP")
scancel --signal=USR2 "$JID" || fail "scancel --signal=USR2 $JID"
wait_state "$CAP" stopped 1 60
grep -q "requeue cap reached" "$CAP/.slurm/$JID.err" || fail "cap message missing"
grep -q "restart=1" "$CAP/run.log" && fail "job requeued beyond the cap"

note "scenario 5d: USR2 to one element of a job array -> that element alone is requeued and resumes"
out=$("$ZSAD" sweep "$EXP" seed=0,1 "task.command=exec sh $W/counter.sh" --launcher slurm 2>&1) || fail "sweep: $out"
AS=$(echo "$out" | sed -n 's/^sweep \(.*\): 2 jobs$/\1/p')
[ -d "$AS" ] || fail "sweep dir not found in output: $out"
wait_progress "$AS/1"
EID=$(job_id_of "$AS/1")
scancel --signal=USR2 "$EID" || fail "scancel --signal=USR2 $EID"
wait_state "$AS" completed 2 120
grep -q "slurm_restarts: 1" "$AS/1/.zsad/job.yaml" || fail "array element $EID was not requeued"
grep -Eq "start at [1-9][0-9]* restart=1" "$AS/1/run.log" || fail "array element did not resume"
grep -q "done 40" "$AS/1/result.txt" && grep -q "done 40" "$AS/0/result.txt" || fail "array results incomplete"
grep -q "restart=1" "$AS/0/run.log" && fail "the other element was restarted too"

fi  # requeue

if want demo; then
# ---------------------------------------------------------------- 6-8. the CoPS demo experiment
# (experiments/demo.yaml: tiny random-weight CLIP, synthetic datasets, 2 ranks, gloo)
DEMO="$SRC/experiments/demo.yaml"
PY=${ZSAD_PYTHON:-/usr/bin/python3}
export ZSAD_DATA_ROOT="$W/data"
run_dir_of() { echo "$1" | sed -n 's/^zsad run: \(\/.*\)$/\1/p'; }

note "scenario 6: demo, 2-task job via sbatch/srun == the same job via zsad launch -n 2"
out=$("$ZSAD" run "$DEMO" model.image_size=64 trainer.epochs=2 2>&1) || fail "local demo run failed: $(echo "$out" | tail -20)"
LOCAL=$(run_dir_of "$out")
[ -d "$LOCAL" ] || fail "local demo run dir not found"
grep -q "zsad launch -n 2\|launch" "$LOCAL/.zsad/config.yaml" || true
out=$("$ZSAD" run "$DEMO" model.image_size=64 trainer.epochs=2 --launcher slurm 2>&1) || fail "demo submit: $out"
SD=$(run_dir_of "$out")
[ -d "$SD" ] || fail "slurm demo run dir not found"
wait_state "$SD" completed 1 240
grep -q -- "--ntasks-per-node=2" "$SD/.slurm/submit_0.sbatch" || fail "demo job is not 2 tasks"
"$PY" "$SRC/tests/slurm/compare_runs.py" "$LOCAL" "$SD" --checkpoints || fail "SLURM demo results differ from zsad launch -n 2"

note "scenario 6b: a user's own sbatch script: srun / mpirun ranks of zsad run --run-dir == zsad launch -n 2"
# The batch shell carries SLURM_PROCID=0 and SLURM_NTASKS=2 but is not a rank (no SLURM_STEP_ID);
# srun's tasks are SLURM ranks, and mpirun's processes (which inherit SLURM_PROCID=0) OpenMPI ranks.
cat > "$W/own.sbatch" <<EOF
#!/bin/bash
#SBATCH --ntasks=2
#SBATCH --output=$W/own.out
srun "$ZSAD" run "$DEMO" model.image_size=64 trainer.epochs=2 > "$W/own_norundir.log" 2>&1
echo "no-run-dir exit \$?"
srun "$ZSAD" run "$DEMO" model.image_size=64 trainer.epochs=2 --run-dir "$W/own_srun" || echo "srun run failed"
mpirun --allow-run-as-root -n 2 "$ZSAD" run "$DEMO" model.image_size=64 trainer.epochs=2 --run-dir "$W/own_mpirun" ||
  echo "mpirun run failed"
EOF
before=$(find "$W/out" -path '*/.zsad/config.yaml' | wc -l)
JID=$(sbatch --parsable "$W/own.sbatch") || fail "sbatch own.sbatch"
deadline=$((SECONDS + 240))
while squeue -h -j "$JID" 2>/dev/null | grep -q .; do
  [ "$SECONDS" -lt "$deadline" ] || fail "own sbatch job $JID still running after 240 s"
  sleep 0.5
done
grep -q "no-run-dir exit 2" "$W/own.out" ||
  fail "srun zsad run without --run-dir did not stop with a usage error: $(cat "$W/own.out" "$W/own_norundir.log")"
grep -q -- "--run-dir" "$W/own_norundir.log" || fail "the usage error does not name --run-dir: $(cat "$W/own_norundir.log")"
[ "$(find "$W/out" -path '*/.zsad/config.yaml' | wc -l)" = "$before" ] ||
  fail "srun zsad run without --run-dir created run directories"
grep -q "run failed" "$W/own.out" && fail "a launched demo failed: $(cat "$W/own.out")"
[ "$(grep -c 'starting: world size 2' "$W/own.out")" = 2 ] ||
  fail "the srun and mpirun ranks did not each form a world of 2: $(grep 'starting:' "$W/own.out")"
for d in own_srun own_mpirun; do
  [ -f "$W/$d/results/synth_objects.json" ] || fail "$d: no results: $(cat "$W/own.out")"
  "$PY" "$SRC/tests/slurm/compare_runs.py" "$LOCAL" "$W/$d" --checkpoints || fail "$d differs from zsad launch -n 2"
done

note "scenario 7: demo preemption: USR2 -> checkpoint -> requeue -> resume == uninterrupted"
out=$("$ZSAD" run "$DEMO" model.image_size=64 trainer.epochs=30 --launcher slurm 2>&1) || fail "demo submit: $out"
UNINT=$(run_dir_of "$out")
[ -d "$UNINT" ] || fail "uninterrupted run dir not found"
wait_state "$UNINT" completed 1 300
out=$("$ZSAD" run "$DEMO" model.image_size=64 trainer.epochs=30 --launcher slurm 2>&1) || fail "demo submit: $out"
PRE=$(run_dir_of "$out")
[ -d "$PRE" ] || fail "preempted run dir not found"
deadline=$((SECONDS + 180))
until grep -q "\[zsad\] epoch" "$PRE/run.log" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the demo never started training: $(tail -5 "$PRE/run.log" 2>&1)"
  sleep 0.2
done
JID=$(job_id_of "$PRE")
scancel --signal=USR2 "$JID" || fail "scancel --signal=USR2 $JID"
wait_state "$PRE" completed 1 300
grep -q "slurm_restarts: 1" "$PRE/.zsad/job.yaml" || fail "the demo job was not requeued: $(tail -20 "$PRE/run.log")"
grep -q "requeue 1/3" "$PRE/.slurm/$JID.out" || fail "wrapper did not log the requeue"
[ "$(ls "$PRE"/checkpoints/ckpt-*.h5 | wc -l)" -ge 2 ] || fail "expected a stop checkpoint and a final one"
"$PY" "$SRC/tests/slurm/compare_runs.py" "$UNINT" "$PRE" --checkpoints ||
  fail "preempted + resumed demo differs from the uninterrupted run"

note "scenario 8: demo sweep of 4 methods as a job array; zsad status 4 completed; leaderboard 4 rows"
out=$("$ZSAD" sweep "$DEMO" model.image_size=64 method=cops,cops_untrained,cops_no_ests,winclip seed=0 trainer.epochs=1 --launcher slurm 2>&1) ||
  fail "demo sweep submit: $out"
echo "$out"
DS=$(echo "$out" | sed -n 's/^sweep \(.*\): 4 jobs$/\1/p')
[ -d "$DS" ] || fail "demo sweep dir not found"
wait_state "$DS" completed 4 480
"$ZSAD" status "$DS" | grep -q "4 jobs, 4 completed" || fail "status does not show 4 completed"
"$ZSAD" leaderboard "$DS" --format csv > "$W/leaderboard.csv" || fail "zsad leaderboard failed"
"$ZSAD" leaderboard "$DS"
rows=$(awk -F, 'NR > 1 && $1 == "main" { print $2 }' "$W/leaderboard.csv" | sort -u | wc -l)
[ "$rows" = 4 ] || fail "leaderboard lists $rows rows, expected 4: $(cat "$W/leaderboard.csv" | head)"

fi  # demo

note "all scenarios passed${GROUPS_WANTED:+ (groups: $GROUPS_WANTED)}"
exit 0
