#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run calls exactly this).
# 1. creates .venv and installs ptbill with its test extras;
# 2. makes sure a Redis answers: PTBILL_TEST_REDIS_URL if set, else 127.0.0.1:6379 (db 15), else starts a
#    throw-away redis-server on a free port (installing Debian's redis-server when it is missing and we are root),
#    else stops with a clear message;
# 3. installs the Medplum test server's Node packages (npm ci, when needed), and makes sure Debian's chromium
#    is there for the HTML report rendering test (installs it when missing and we are root);
# 4. runs ruff, mypy and pytest (all three layers: pure, client, integration; three test processes, see below).
#    Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

redis_ok() { .venv/bin/python -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_timeout=2).ping()" "$1" >/dev/null 2>&1; }

REDIS_PID=""
cleanup() { if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

if [ -n "${PTBILL_TEST_REDIS_URL:-}" ] && redis_ok "$PTBILL_TEST_REDIS_URL"; then
  :
elif redis_ok "redis://127.0.0.1:6379/15"; then
  export PTBILL_TEST_REDIS_URL="redis://127.0.0.1:6379/15"
else
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "test.sh: redis-server not found; installing Debian's redis-server" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
    fi
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "test.sh: no Redis answers and redis-server is not installed." >&2
    echo "         Install it (Debian/Ubuntu: apt-get install redis-server) or set PTBILL_TEST_REDIS_URL." >&2
    exit 2
  fi
  PORT=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  RDIR=$(mktemp -d)
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RDIR" \
    --logfile "$RDIR/redis.log" --daemonize no >/dev/null 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do redis_ok "redis://127.0.0.1:$PORT/0" && break; sleep 0.1; done
  redis_ok "redis://127.0.0.1:$PORT/0" || { echo "test.sh: redis-server did not start" >&2; exit 2; }
  export PTBILL_TEST_REDIS_URL="redis://127.0.0.1:$PORT/0"
  echo "test.sh: started redis-server on port $PORT for the tests" >&2
fi

# the Medplum test server's Node packages (tests/servers/medplum): npm ci when node_modules is missing or
#    older than the lockfile.
MEDPLUM_DIR=tests/servers/medplum
if [ ! -f "$MEDPLUM_DIR/node_modules/.package-lock.json" ] \
   || [ "$MEDPLUM_DIR/package-lock.json" -nt "$MEDPLUM_DIR/node_modules/.package-lock.json" ]; then
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "test.sh: node and npm are needed for the Medplum test server ($MEDPLUM_DIR): install Node 20+ with npm." >&2
    exit 2
  fi
  echo "test.sh: installing the Medplum test server's packages (npm ci in $MEDPLUM_DIR)" >&2
  (cd "$MEDPLUM_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: chromium not found; installing Debian's chromium (headless HTML report test)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
      || echo "test.sh: could not install chromium; the HTML rendering test will be skipped" >&2
  else
    echo "test.sh: chromium not found (apt-get install chromium); the HTML rendering test will be skipped" >&2
  fi
fi

.venv/bin/ruff check integration tasks mappings ptbill_demo tests bench
.venv/bin/mypy  # strict on integration.billing and mappings: [[tool.mypy.overrides]] in pyproject.toml
.venv/bin/ptbill mappings check >/dev/null
# pytest-xdist: the integration tests mostly wait on servers and workers, so three test processes fit two cores;
# --dist loadfile keeps each module (and its module-scoped servers) in one process, and each process has its own
# Redis database (tests/redis_db.py). TEST_PROCESSES=0 runs everything in this one process.
.venv/bin/python -m pytest -q -n "${TEST_PROCESSES:-3}" --dist loadfile "$@"
