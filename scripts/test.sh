#!/usr/bin/env bash
# `make test`: the main suite (unit and end-to-end) and, at the same time, two background
# jobs — the browser tier, and the fault subset, then the smoke run of every benchmark, then
# the integration tier. Each starts its own system (database and vhost of its own; the fault cases
# their own RabbitMQ node and PostgreSQL cluster), and all of them mostly wait on services, so
# together they take about the time of the longest. The browser tier runs without eventlet
# (Playwright hangs in an eventlet-patched process: docs/ENGINEERING.md pitfall 19). The side
# runs' reports are printed after the main suite's. Arguments go to every run.
#
# The run cannot pass by hiding a tier: each run has a time limit, a run that collects no test
# fails unless the arguments select tests, and the fault tier may not skip itself
# (CHAMADOS_FAULTS_REQUIRED). The last lines name every run that failed and why.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
browser_log=var/browser-tests.log
integration_log=var/integration-tests.log
faults_log=var/fault-tests.log
bench_log=var/bench-smoke-tests.log
# About twice what each run takes on a 2-core machine (all of `make test`: ~10 minutes), so
# only a hang reaches them; CHAMADOS_TEST_LIMIT_<RUN> sets one (a `timeout` duration).
main_limit=${CHAMADOS_TEST_LIMIT_MAIN:-25m}
browser_limit=${CHAMADOS_TEST_LIMIT_BROWSER:-15m}
integration_limit=${CHAMADOS_TEST_LIMIT_INTEGRATION:-10m}
faults_limit=${CHAMADOS_TEST_LIMIT_FAULTS:-15m}
bench_limit=${CHAMADOS_TEST_LIMIT_BENCH:-10m}
# Past its limit a run gets SIGINT, so pytest tears its system down, and SIGKILL a minute
# later; `timeout` then exits 124. --foreground keeps the run in this process group, so a
# Ctrl-C at the terminal reaches every run once and each tears its system down.
limited=(timeout --foreground --signal=INT --kill-after=60)
pytest=(.venv/bin/python -m pytest)

# Do the arguments select tests (-k, -m, --deselect, a test path or node id)? Only then may a
# run collect nothing (pytest's exit 5): -k chat selects nothing among the benchmarks.
selection=0
for arg in "$@"; do
    case $arg in
        -k | -k?* | -m | -m?* | --deselect | --deselect=*) selection=1 ;;
        -*) ;;
        *) [ -e "${arg%%::*}" ] && selection=1 ;;
    esac
done

wait_for() {  # a background run's exit status, waiting again after a trapped signal
    while kill -0 "$1" 2>/dev/null; do wait "$1"; done
    wait "$1"
}

rm -f var/fault-tests.status var/bench-tests.status "$bench_log" "$integration_log"  # no stale report
"${limited[@]}" "$browser_limit" "${pytest[@]}" tests/browser --confcutdir=tests/browser "$@" \
    >"$browser_log" 2>&1 &
browser=$!
(
    # no benchmark after a stop: a TERM is passed on to the current run; after a Ctrl-C (which
    # reached the fault run itself, USR1 from below) only a benchmark started since is stopped
    stopping=0
    trap 'stopping=1; kill -INT "$run" 2>/dev/null' TERM
    trap 'stopping=1; [ "$current" != faults ] && kill -INT "$run" 2>/dev/null' USR1
    current=faults
    CHAMADOS_FAULTS_REQUIRED=1 "${limited[@]}" "$faults_limit" "${pytest[@]}" tests/faults "$@" \
        >"$faults_log" 2>&1 &
    run=$!
    wait_for "$run"
    echo $? >var/fault-tests.status
    [ "$stopping" = 1 ] && exit 130
    current=bench
    "${limited[@]}" "$bench_limit" "${pytest[@]}" tests/bench "$@" >"$bench_log" 2>&1 &
    run=$!
    wait_for "$run"
    echo $? >var/bench-tests.status
    [ "$stopping" = 1 ] && exit 130
    # last: the fault cases time answers, so they run beside no more than the main suite and
    # the browser tier
    current=integration
    "${limited[@]}" "$integration_limit" "${pytest[@]}" tests/integration "$@" >"$integration_log" 2>&1 &
    run=$!
    wait_for "$run"
) &
side=$!
# a Ctrl-C reached every run (they share this process group): wait for their teardown and report
trap 'kill -USR1 "$side" 2>/dev/null' INT
trap 'kill -INT "$browser" 2>/dev/null; kill -TERM "$side" 2>/dev/null' TERM
"${limited[@]}" "$main_limit" "${pytest[@]}" --ignore=tests/faults --ignore=tests/bench \
    --ignore=tests/integration "$@"
main_status=$?
wait_for "$side"
integration_status=$?
faults_status=$(cat var/fault-tests.status 2>/dev/null || echo 1)
bench_status=$(cat var/bench-tests.status 2>/dev/null || echo 1)
wait_for "$browser"
browser_status=$?
echo "=== fault subset (tests/faults, log: $faults_log; every case: make test-faults) ==="
cat "$faults_log"
echo "=== benchmarks at smoke size (tests/bench, log: $bench_log) ==="
cat "$bench_log" 2>/dev/null
echo "=== browser tests (tests/browser, log: $browser_log) ==="
cat "$browser_log"
echo "=== integration tests (tests/integration, log: $integration_log) ==="
cat "$integration_log" 2>/dev/null

failed=0
verdict() {  # run name, its exit status, its limit: a line for a run that did not pass
    case $2 in
        0) return ;;
        5) [ "$selection" = 1 ] && return  # the selection left nothing in this run
           echo "FAILED: the $1 collected no test, and no -k, -m or test path was given" ;;
        124) echo "FAILED: the $1 timed out after $3 (its output is above)" ;;
        130) echo "FAILED: the $1 was interrupted" ;;
        *) echo "FAILED: the $1 exited $2 (its output is above)" ;;
    esac
    failed=1
}
verdict "main suite" "$main_status" "$main_limit"
verdict "fault subset" "$faults_status" "$faults_limit"
verdict "benchmark smoke run" "$bench_status" "$bench_limit"
verdict "browser tier" "$browser_status" "$browser_limit"
verdict "integration tier" "$integration_status" "$integration_limit"
exit "$failed"
