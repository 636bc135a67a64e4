#!/usr/bin/env bash
# Make sure what Chamados needs runs on this machine: RabbitMQ with its management plugin;
# with --postgres, PostgreSQL; with --tests, PostgreSQL and Prometheus's binaries (the
# suite runs promtool and a real Prometheus). Starts what is stopped; installs from
# Debian's packages what is absent (as root); says clearly what to do when it cannot.
set -euo pipefail

want_postgres=0
want_prometheus=0
case "${1:-}" in
    --postgres) want_postgres=1 ;;
    --tests) want_postgres=1; want_prometheus=1 ;;
esac

say() { echo "infra     | $*"; }
die() { echo "infra     | ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local port=$1 seconds=$2
    for _ in $(seq 1 "$seconds"); do port_open "$port" && return 0; sleep 1; done
    return 1
}
apt_install() {
    [ "$(id -u)" = 0 ] || die "$* is not installed and I am not root: run 'sudo apt-get install $*', then retry"
    command -v apt-get >/dev/null || die "$* is not installed and this is not a Debian machine: install it, then retry"
    say "installing $* from Debian's packages"
    apt-get update -qq >/dev/null || die "apt-get update failed (no package registry reachable?)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

# --- RabbitMQ on 127.0.0.1:5672, management API on 15672 -------------------------------
if ! port_open 5672; then
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    say "starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || service rabbitmq-server start >/dev/null 2>&1 || true
    wait_port 5672 120 || die "RabbitMQ did not start on 127.0.0.1:5672 (see /var/log/rabbitmq/)"
fi
if ! port_open 15672; then
    say "enabling the RabbitMQ management plugin"
    rabbitmq-plugins enable rabbitmq_management >/dev/null || die "could not enable rabbitmq_management"
    wait_port 15672 60 || die "the RabbitMQ management API did not come up on 127.0.0.1:15672"
fi
say "RabbitMQ: running, management API on :15672"

# --- PostgreSQL on 127.0.0.1:5432 (tests, and DATABASE_URL=postgresql+psycopg://…) -------
if [ "$want_postgres" = 1 ]; then
    if ! port_open 5432; then
        command -v pg_ctlcluster >/dev/null || apt_install postgresql
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        [ -n "$version" ] || die "PostgreSQL is installed but has no cluster (pg_createcluster)"
        say "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
            || pg_ctlcluster "$version" main start || die "PostgreSQL did not start"
        wait_port 5432 60 || die "PostgreSQL did not listen on 127.0.0.1:5432"
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
