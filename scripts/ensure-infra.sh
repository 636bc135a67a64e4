#!/usr/bin/env bash
# Make sure what Chamados needs runs on this machine: RabbitMQ with its management plugin
# (where AMQP_URI and RABBIT_MANAGEMENT_URL point; default 127.0.0.1:5672 and :15672); with
# --postgres, PostgreSQL; with --tests, PostgreSQL, Prometheus's binaries (the suite runs
# promtool and a real Prometheus) and the RabbitMQ/PostgreSQL server binaries the fault
# suite starts its private node and cluster from, and Chromium for the browser tests; with
# --bench, also wrk. Starts what is
# stopped; installs from Debian's packages what is absent (as root); says clearly what to do
# when it cannot.
set -euo pipefail

want_postgres=0
want_prometheus=0
want_fault_binaries=0
want_wrk=0
want_chromium=0
case "${1:-}" in
    --postgres) want_postgres=1 ;;
    --tests) want_postgres=1; want_prometheus=1; want_fault_binaries=1; want_chromium=1 ;;
    --bench) want_postgres=1; want_prometheus=1; want_fault_binaries=1; want_wrk=1; want_chromium=1 ;;
esac

say() { echo "infra     | $*"; }
die() { echo "infra     | ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }  # host port
wait_port() {
    local host=$1 port=$2 seconds=$3
    for _ in $(seq 1 "$seconds"); do port_open "$host" "$port" && return 0; sleep 1; done
    return 1
}
# host and port of a URL (scheme://[user[:password]@]host[:port][/path]); $2: the default port
url_host() { local rest=${1#*://}; rest=${rest%%/*}; rest=${rest##*@}
    case "$rest" in \[*) rest=${rest#\[}; echo "${rest%%\]*}" ;; *) echo "${rest%%:*}" ;; esac; }
url_port() { local rest=${1#*://}; rest=${rest%%/*}; rest=${rest##*@}
    case "$rest" in \[*\]:*) echo "${rest##*\]:}" ;; \[*) echo "$2" ;; *:*) echo "${rest##*:}" ;; *) echo "$2" ;; esac; }
is_local() { case "$1" in 127.*|localhost|::1|"$(hostname)") return 0 ;; *) return 1 ;; esac; }
apt_install() {
    [ "$(id -u)" = 0 ] || die "$* is not installed and I am not root: run 'sudo apt-get install $*', then retry"
    command -v apt-get >/dev/null || die "$* is not installed and this is not a Debian machine: install it, then retry"
    say "installing $* from Debian's packages"
    apt-get update -qq >/dev/null || die "apt-get update failed (no package registry reachable?)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

# --- RabbitMQ: where AMQP_URI points (default 127.0.0.1:5672), management API where
# RABBIT_MANAGEMENT_URL points (default http://127.0.0.1:15672/api) -------------------------
amqp_uri=${AMQP_URI:-amqp://guest:guest@127.0.0.1:5672/}
case "$amqp_uri" in amqps://*) amqp_default_port=5671 ;; *) amqp_default_port=5672 ;; esac
amqp_host=$(url_host "$amqp_uri"); amqp_host=${amqp_host:-127.0.0.1}
amqp_port=$(url_port "$amqp_uri" "$amqp_default_port")
management_url=${RABBIT_MANAGEMENT_URL:-http://127.0.0.1:15672/api}
case "$management_url" in https://*) management_default_port=443 ;; *) management_default_port=80 ;; esac
management_host=$(url_host "$management_url"); management_host=${management_host:-127.0.0.1}
management_port=$(url_port "$management_url" "$management_default_port")

if ! port_open "$amqp_host" "$amqp_port"; then
    is_local "$amqp_host" || die "no RabbitMQ answers at $amqp_host:$amqp_port (AMQP_URI): start it there, then retry"
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    say "starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || service rabbitmq-server start >/dev/null 2>&1 || true
    wait_port "$amqp_host" "$amqp_port" 120 \
        || die "RabbitMQ did not start on $amqp_host:$amqp_port (AMQP_URI; see /var/log/rabbitmq/)"
fi
if ! port_open "$management_host" "$management_port"; then
    is_local "$management_host" \
        || die "the RabbitMQ management API does not answer at $management_host:$management_port (RABBIT_MANAGEMENT_URL)"
    say "enabling the RabbitMQ management plugin"
    rabbitmq-plugins enable rabbitmq_management >/dev/null || die "could not enable rabbitmq_management"
    wait_port "$management_host" "$management_port" 60 \
        || die "the RabbitMQ management API did not come up on $management_host:$management_port (RABBIT_MANAGEMENT_URL)"
fi
say "RabbitMQ: running on $amqp_host:$amqp_port, management API on $management_host:$management_port"

# --- PostgreSQL on 127.0.0.1:5432 (tests, and DATABASE_URL=postgresql+psycopg://…) -------
if [ "$want_postgres" = 1 ]; then
    if ! port_open 127.0.0.1 5432; then
        command -v pg_ctlcluster >/dev/null || apt_install postgresql
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        [ -n "$version" ] || die "PostgreSQL is installed but has no cluster (pg_createcluster)"
        say "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
            || pg_ctlcluster "$version" main start || die "PostgreSQL did not start"
        wait_port 127.0.0.1 5432 60 || die "PostgreSQL did not listen on 127.0.0.1:5432"
    fi
    # a fresh Debian cluster knows only 'postgres': give the current user a superuser role
    me=$(id -un)
    if ! psql -h 127.0.0.1 -U "$me" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1 \
        && ! psql -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
            su postgres -c "createuser --superuser '$me'" 2>/dev/null || true
        fi
    fi
    say "PostgreSQL: running on :5432"
fi

# --- the fault suite (tests/faults) boots a private RabbitMQ node and PostgreSQL cluster of
# its own from these binaries, whatever broker and database the settings point to ---------
if [ "$want_fault_binaries" = 1 ]; then
    command -v rabbitmq-server >/dev/null || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] \
        || apt_install rabbitmq-server
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
        || apt_install postgresql
fi

# --- Prometheus binaries (promtool rule tests, the scrape end-to-end test) ---------------
if [ "$want_prometheus" = 1 ]; then
    if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
        apt_install prometheus
        # the package starts a system-wide Prometheus; the tests start their own
        service prometheus stop >/dev/null 2>&1 || pkill -x prometheus || true
        service prometheus-node-exporter stop >/dev/null 2>&1 || true
    fi
    say "Prometheus: $(promtool --version 2>&1 | head -n 1)"
fi

# --- Chromium, driven by Playwright in the console's browser tests (tests/browser); Debian's
# package, since no browser can be downloaded here -----------------------------------------
if [ "$want_chromium" = 1 ]; then
    [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium
    say "Chromium: $("${CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null | head -n 1)"
fi

# --- wrk, the HTTP load generator of `make bench` (bench/httpload.py) ------------------------
if [ "$want_wrk" = 1 ]; then
    command -v wrk >/dev/null || apt_install wrk
    say "wrk: $(command -v wrk)"
fi
