#!/bin/sh
# The public postgres image's contract, for kubefixtures.local/postgres:15, which runs as the
# non-root user postgres from the start (the public image starts as root and drops to it):
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#   (default postgres), POSTGRES_DB (default: the user), POSTGRES_INITDB_ARGS, PGDATA;
#   on the first start: initdb, the database, then /docker-entrypoint-initdb.d/*.sql and
#   *.sh; then postgres listening on every address, port 5432.
# PGDATA must be a directory this user may create or own: with a volume mounted at
# /var/lib/postgresql/data, point PGDATA at a subdirectory of it (.../data/pgdata).
set -eu

if [ "${1:-postgres}" != postgres ] && [ "${1#-}" = "${1:-}" ]; then
    exec "$@"  # another program (psql, sh): run it as it is
fi
[ "${1:-}" = postgres ] && shift

PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
AUTH=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
export PGDATA

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$AUTH" != trust ]; then
        echo "docker-entrypoint.sh: error: POSTGRES_PASSWORD is empty" \
             "(set it, or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    pwfile=$(mktemp)
    # The password goes through a private file, never a command line (ps would show it).
    printf '%s' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as upstream
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host="$AUTH" ${POSTGRES_INITDB_ARGS:-} > /dev/null
    rm -f "$pwfile"
    printf '\nhost all all all %s\n' "$AUTH" >> "$PGDATA/pg_hba.conf"

    # A server on the Unix socket only, for the set-up steps, as upstream does.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/tmp" \
        -w -s start
    run_psql() { psql -v ON_ERROR_STOP=1 -h /tmp -U "$POSTGRES_USER" -q "$@"; }
    if [ "$POSTGRES_DB" != postgres ]; then
        run_psql -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) echo "docker-entrypoint.sh: running $script"; run_psql -d "$POSTGRES_DB" -f "$script" ;;
            *.sh) echo "docker-entrypoint.sh: sourcing $script"; . "$script" ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w -s stop
    echo "docker-entrypoint.sh: database $POSTGRES_DB of user $POSTGRES_USER is initialised"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
