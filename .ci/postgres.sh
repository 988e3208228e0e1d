#!/usr/bin/env bash
# Usage: .ci/postgres.sh COMMAND [ARGS...]
#
# Runs COMMAND with LRO_TEST_POSTGRES_URL naming a throwaway PostgreSQL server, and exits with
# COMMAND's exit code. The server is started here and stopped (its data directory removed) on
# exit, whatever happens:
#   - PostgreSQL is looked for in /usr/lib/postgresql/*/bin (newest first), then on PATH; when
#     missing it is installed with `apt-get install -y postgresql` (through sudo when not root);
#   - initdb into a new temporary directory, as an unprivileged user when run as root (`postgres`,
#     created as a system user if absent), superuser `postgres`, trust authentication;
#   - the server listens on 127.0.0.1 only, on a free port, its socket in that directory, with
#     durability off (fsync, synchronous_commit: a test server, thrown away);
#   - database `lro_test`; LRO_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/lro_test.
# When LRO_TEST_POSTGRES_URL is already set, it is used as is and no server is started.
#
# Example: .ci/postgres.sh cargo test -p lro-store --test postgres -- --ignored
set -euo pipefail

trap 'echo "ERROR: .ci/postgres.sh: command failed (exit code $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

say() { echo "==> postgres: $*"; }
die() {
    echo "ERROR: .ci/postgres.sh: $*" >&2
    exit 1
}

if [ "$#" -eq 0 ]; then
    die "usage: .ci/postgres.sh COMMAND [ARGS...] (runs COMMAND with LRO_TEST_POSTGRES_URL set)"
fi

if [ -n "${LRO_TEST_POSTGRES_URL:-}" ]; then
    say "LRO_TEST_POSTGRES_URL is already set: using that server, starting none"
    exec "$@"
fi

# The directory holding initdb and pg_ctl, or nothing.
find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
    fi
}

bin=$(find_bin)
if [ -z "$bin" ]; then
    say "initdb/pg_ctl not found in /usr/lib/postgresql/*/bin nor on PATH: installing PostgreSQL (apt-get install -y postgresql)"
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL is not installed and apt-get is missing: install PostgreSQL (initdb, pg_ctl, pg_isready, psql) and rerun, or set LRO_TEST_POSTGRES_URL to a server of yours"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL is not installed, and installing it needs root (no sudo here)"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update ||
        die "apt-get update failed: cannot install PostgreSQL"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql ||
        die "apt-get install -y postgresql failed: install PostgreSQL by hand and rerun"
    bin=$(find_bin)
    [ -n "$bin" ] || die "apt-get installed postgresql but initdb/pg_ctl are still not found"
fi
for tool in initdb pg_ctl pg_isready psql; do
    [ -x "$bin/$tool" ] || die "$bin/$tool is missing (PostgreSQL's server and client programs are needed)"
done
say "using $("$bin/pg_ctl" --version) from $bin"

# initdb refuses to run as root: root runs the server as an unprivileged user.
as_user=()
if [ "$(id -u)" -eq 0 ]; then
    pg_user=postgres
    if ! id "$pg_user" >/dev/null 2>&1; then
        say "creating the system user $pg_user to run the server"
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$pg_user" ||
            die "cannot create the system user $pg_user"
    fi
    if command -v runuser >/dev/null 2>&1; then
        as_user=(runuser -u "$pg_user" --)
    else
        as_user=(setpriv --reuid="$pg_user" --regid="$pg_user" --init-groups --)
    fi
else
    pg_user=$(id -un)
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/lro-postgres.XXXXXX")
data="$dir/data"
log="$dir/server.log"
server_started=

# Runs a PostgreSQL program as $pg_user, from the data's parent directory (the user may not be
# allowed into the caller's working directory).
as_pg() { (cd "$dir" && "${as_user[@]}" "$@"); }

cleanup() {
    local code=$?
    if [ -n "$server_started" ]; then
        say "stopping the server"
        if ! as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null; then
            echo "ERROR: .ci/postgres.sh: pg_ctl stop failed; killing the server" >&2
            if [ -f "$data/postmaster.pid" ]; then
                kill -9 "$(head -n 1 "$data/postmaster.pid")" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf "$dir"
    return "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

chown "$pg_user" "$dir"
say "initdb in $data (as $pg_user)"
as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    die "initdb failed (its output is above)"
}

# A port nobody listens on: the kernel's choice, else the first of a range that refuses.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    for port in $(seq 54320 54400); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free port in 54320..54400"
}

# Bound a moment after choosing: another program may take the port first; then try another.
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
EOF
    chown "$pg_user" "$data/postgresql.auto.conf"
    say "starting the server on 127.0.0.1:$port (attempt $attempt)"
    if as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
        server_started=yes
        break
    fi
    if [ -f "$data/postmaster.pid" ]; then
        server_started=yes # pg_ctl gave up waiting but a server may run: stop it on exit
        cat "$log" >&2
        die "the server did not become ready within 60 s (its log is above)"
    fi
    grep -q "could not bind\|could not create listen socket" "$log" 2>/dev/null || {
        cat "$log" >&2
        die "pg_ctl start failed (the server log is above)"
    }
done
[ -n "$server_started" ] || {
    cat "$log" >&2
    die "could not start the server on a free port in 5 attempts (the last log is above)"
}

for _ in $(seq 1 60); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
        break
    fi
    sleep 0.5
done
"$bin/pg_isready" -h 127.0.0.1 -p "$port" -U postgres >/dev/null ||
    die "pg_isready: the server on 127.0.0.1:$port does not accept connections (log: $log)"

"$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE lro_test" || die "cannot create the database lro_test"

export LRO_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/lro_test"
say "ready: LRO_TEST_POSTGRES_URL=$LRO_TEST_POSTGRES_URL"

# Not exec: the server is stopped on exit. The command's code is this script's.
trap - ERR
status=0
"$@" || status=$?
exit "$status"
