#!/usr/bin/env bash
# Nightly wrapper for `orderload run`, for cron or systemd.
#  - loads the environment (the client secret lives in a root-readable env file, never on the
#    command line),
#  - appends JSON logs to a log file,
#  - writes Prometheus metrics for node_exporter's textfile collector,
#  - maps the exit code to an alert level (see cron/README.md).
set -u

ORDERLOAD_HOME=${ORDERLOAD_HOME:-/opt/orderload}
ORDERLOAD_BIN=${ORDERLOAD_BIN:-$ORDERLOAD_HOME/bin/orderload}
ORDERLOAD_ENV_FILE=${ORDERLOAD_ENV_FILE:-/etc/orderload/orderload.env}
ORDERLOAD_LOG_DIR=${ORDERLOAD_LOG_DIR:-/var/log/orderload}
METRICS_FILE=${METRICS_FILE:-/var/lib/node_exporter/textfile_collector/orderload.prom}

if [ -r "$ORDERLOAD_ENV_FILE" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$ORDERLOAD_ENV_FILE"
    set +a
fi

mkdir -p "$ORDERLOAD_LOG_DIR"
log="$ORDERLOAD_LOG_DIR/orderload-$(date -u +%Y%m%d).log"
cd "$ORDERLOAD_HOME" || exit 1

"$ORDERLOAD_BIN" --log-format json run --metrics-file "$METRICS_FILE" >>"$log" 2>&1
code=$?

case $code in
    0) level=ok;      msg="all orders loaded" ;;
    3) level=warning; msg="finished; some orders failed or rows were rejected: run 'orderload report --failed'" ;;
    4) level=info;    msg="another run holds the lease; nothing done (previous run still going?)" ;;
    5) level=critical; msg="Dynamics 365 unavailable or authentication failed; nothing submitted" ;;
    2) level=critical; msg="usage error: the wrapper or cron line is wrong" ;;
    *) level=critical; msg="could not run (configuration, database or unexpected error)" ;;
esac
printf '%s orderload exit=%s level=%s %s\n' "$(date -u +%FT%TZ)" "$code" "$level" "$msg" >>"$log"
if [ "$level" != ok ] && command -v logger >/dev/null 2>&1; then
    logger -t orderload -p "user.$( [ "$level" = critical ] && echo err || echo warning )" "exit=$code $msg (log: $log)"
fi
exit "$code"
