#!/usr/bin/env bash
# Attack the example app with tools nobody on this project wrote.
#
# Starts the example app on MariaDB under gunicorn (2 workers, 127.0.0.1 only),
# then runs Debian's sqlmap against the login routes (JSON and form fields, and
# the HTML login form with its CSRF token) and against GET /auth/check with the
# token in the bearer header and in the cookie; then a burst of random token
# guesses, and a password-guessing burst against the default login throttle.
# Prints what each step found, and exits non-zero if anything was.
#
# Usage: security/attack.sh            (from a checkout with .venv installed
#                                       with '.[test]': gunicorn comes with it)
# Environment:
#   KPSESSION_ATTACK_DB      MariaDB URL of a scratch database (created, then
#                            dropped): mysql+pymysql://root@127.0.0.1:3306/kpsession_attack
#   KPSESSION_ATTACK_PORT    port on 127.0.0.1 (default 8765)
#   SQLMAP_LEVEL, SQLMAP_RISK  sqlmap's --level and --risk (default 2 and 2)
#   GUESSES                  tokens guessed in the burst (default 3000)
# Needs: sqlmap (apt-get install -y sqlmap), MariaDB answering at that URL.
set -euo pipefail
cd "$(dirname "$0")/.."

DB_URL="${KPSESSION_ATTACK_DB:-mysql+pymysql://root@127.0.0.1:3306/kpsession_attack}"
PORT="${KPSESSION_ATTACK_PORT:-8765}"
LEVEL="${SQLMAP_LEVEL:-2}"
RISK="${SQLMAP_RISK:-2}"
GUESSES="${GUESSES:-3000}"
BASE="http://127.0.0.1:${PORT}"
PY=.venv/bin/python
GUNICORN=.venv/bin/gunicorn
FLASK=.venv/bin/flask

command -v sqlmap >/dev/null || { echo "sqlmap is missing: apt-get install -y sqlmap" >&2; exit 2; }
[ -x "$GUNICORN" ] || { echo "$GUNICORN is missing: .venv/bin/pip install -e '.[test]'" >&2; exit 2; }

WORK="$(mktemp -d)"
SERVER_PID=""
FOUND=0

# The app's settings, all through the example app's FLASK_ variables.
export SQLALCHEMY_DATABASE_URI="$DB_URL"
export FLASK_SECRET_KEY="attack-run-secret-$(date +%s)-$$"
export FLASK_KPSESSION_CLEANUP_ENABLED=false
# OWASP's minimum argon2id cost: the scan makes thousands of failed logins.
export FLASK_KPSESSION_PASSWORD_TIME_COST=2
export FLASK_KPSESSION_PASSWORD_MEMORY_COST=19456
export FLASK_KPSESSION_PASSWORD_PARALLELISM=1

database() {  # database create|drop|forget-failures
  "$PY" - "$1" "$DB_URL" <<'PY'
import sys
import pymysql
from sqlalchemy.engine import make_url

action, url = sys.argv[1], make_url(sys.argv[2])
conn = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306,
                       user=url.username or "root", password=url.password or "",
                       autocommit=True)
with conn.cursor() as cursor:
    if action == "create":
        cursor.execute(f"DROP DATABASE IF EXISTS `{url.database}`")
        cursor.execute(f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4")
    elif action == "forget-failures":
        cursor.execute(f"DELETE FROM `{url.database}`.kp_login_failures")
    else:
        cursor.execute(f"DROP DATABASE IF EXISTS `{url.database}`")
PY
}

start_server() {  # start_server LABEL: gunicorn with the current environment
  "$GUNICORN" --bind "127.0.0.1:${PORT}" --workers 2 --timeout 60 \
    --access-logfile "$WORK/access-$1.log" --error-logfile "$WORK/error-$1.log" \
    'example_app:create_app()' >"$WORK/server-$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "$BASE/auth/check"; then return 0; fi
    sleep 0.2
  done
  echo "gunicorn did not come up; see $WORK/error-$1.log, $WORK/server-$1.log" >&2
  exit 1
}

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

cleanup() {
  stop_server
  database drop || true
}
trap cleanup EXIT

login_token() {  # login_token USER PASSWORD
  curl -s -X POST "$BASE/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\": \"$1\", \"password\": \"$2\"}" |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

statuses() {  # statuses SKIP: "N×code ..." for the access log lines after SKIP
  tail -n "+$(($1 + 1))" "$WORK/access-scan.log" | awk '{print $9}' | sort | uniq -c |
    awk '{printf "%s%s×%s", sep, $1, $2; sep=" "} END {print ""}'
}

scan() {  # scan NAME sqlmap-arguments...: run sqlmap, print its verdict
  local name="$1" before after
  shift
  echo "--- sqlmap: $name"
  before=$(wc -l <"$WORK/access-scan.log")
  sqlmap --batch --flush-session --disable-coloring --level "$LEVEL" --risk "$RISK" \
    --dbms=MySQL --ignore-code=401,403,429 --output-dir="$WORK/sqlmap" \
    "$@" >"$WORK/sqlmap-$name.log" 2>&1 || true
  after=$(wc -l <"$WORK/access-scan.log")
  echo "    $((after - before)) requests reached the app; answers: $(statuses "$before")"
  if grep -Eiq "is vulnerable|sqlmap identified the following injection point|appears to be '.*' injectable" \
      "$WORK/sqlmap-$name.log"; then
    echo "    INJECTION FOUND: see $WORK/sqlmap-$name.log"
    grep -Ei "injectable|Parameter:|Type:|Title:" "$WORK/sqlmap-$name.log" | head -20 | sed 's/^/    /'
    FOUND=1
  elif grep -Eiq "do not appear to be injectable|does not seem to be injectable" \
      "$WORK/sqlmap-$name.log"; then
    grep -Ei "does not seem to be injectable" "$WORK/sqlmap-$name.log" |
      sed 's/^\[[0-9:]*\] \[WARNING\] //; s/^/    /' | sort -u | head -8
    echo "    no injection found"
  else
    echo "    sqlmap ended without a verdict; its last lines:"
    tail -5 "$WORK/sqlmap-$name.log" | sed 's/^/    /'
    FOUND=1
  fi
}

echo "== flask-kpsession attack run, $(date -u +%FT%TZ)"
echo "   example app on $DB_URL, gunicorn 2 workers at $BASE"
echo "   sqlmap $(sqlmap --version 2>/dev/null | head -1), --level $LEVEL --risk $RISK"
echo "   work files: $WORK"
database create

# -- 1. sqlmap, with throttling lifted so that every probe reaches the queries ---
export FLASK_KPSESSION_LOGIN_PAIR_LIMIT=1000000
export FLASK_KPSESSION_LOGIN_ADDRESS_LIMIT=1000000
export FLASK_KPSESSION_LOGIN_USER_LIMIT=1000000
start_server scan
printf 'correct horse battery\n' |
  FLASK_APP=example_app "$FLASK" kpsession create-user alice --password-stdin \
    >"$WORK/cli.log" 2>&1
TOKEN="$(login_token alice 'correct horse battery')"
echo "   logged in as alice; token of ${#TOKEN} characters"

scan login-json -u "$BASE/auth/login" -p username,password \
  --data '{"username": "alice", "password": "guess"}' \
  --headers 'Content-Type: application/json'
scan login-form -u "$BASE/auth/login" -p username,password \
  --data 'username=alice&password=guess'
scan html-login-form -u "$BASE/login" -p username,password \
  --data 'csrf_token=x&username=alice&password=guess' \
  --csrf-token=csrf_token --csrf-url="$BASE/login"
scan check-bearer -u "$BASE/auth/check" --headers "Authorization: Bearer ${TOKEN}*"
scan check-cookie -u "$BASE/auth/check" --cookie "kp_session=${TOKEN}*" \
  -p kp_session

# The scan's own session must still be alice's, and alive.
still="$(curl -s "$BASE/auth/check" -H "Authorization: Bearer $TOKEN")"
echo "--- after the scans, GET /auth/check with alice's token: $still"
case "$still" in *'"username":"alice"'*) ;; *) FOUND=1 ;; esac

# -- 2. token guessing burst ---------------------------------------------------
echo "--- token guessing: $GUESSES random 256-bit tokens, 8 at a time"
"$PY" - "$BASE" "$GUESSES" <<'PY' || FOUND=1
import collections
import secrets
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, count = sys.argv[1], int(sys.argv[2])


def guess(index: int) -> int:
    token = secrets.token_urlsafe(32)
    headers = (
        {"Authorization": f"Bearer {token}"}
        if index % 2
        else {"Cookie": f"kp_session={token}"}
    )
    request = urllib.request.Request(f"{base}/auth/check", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


started = time.monotonic()
with ThreadPoolExecutor(max_workers=8) as pool:
    statuses = collections.Counter(pool.map(guess, range(count)))
elapsed = time.monotonic() - started
print(f"    answers: {dict(sorted(statuses.items()))} in {elapsed:.1f} s "
      f"({count / elapsed:.0f} guesses/s)")
hits = statuses.get(200, 0)
print(f"    sessions guessed: {hits}")
sys.exit(1 if hits or any(code >= 500 for code in statuses) else 0)
PY
stop_server

# -- 3. password guessing against the default throttle --------------------------
unset FLASK_KPSESSION_LOGIN_PAIR_LIMIT FLASK_KPSESSION_LOGIN_ADDRESS_LIMIT \
  FLASK_KPSESSION_LOGIN_USER_LIMIT
database forget-failures  # the scan's thousands of failures would block at once
start_server throttle
echo "--- password guessing: 30 wrong passwords for alice, default limits, 2 workers"
codes=""
for i in $(seq 1 30); do
  codes+="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/auth/login" \
    -H 'Content-Type: application/json' \
    -d "{\"username\": \"alice\", \"password\": \"guess $i\"}") "
done
echo "    answers in order: $codes"
right="$(curl -s -D - -o /dev/null -X POST "$BASE/auth/login" \
  -H 'Content-Type: application/json' \
  -d '{"username": "alice", "password": "correct horse battery"}' |
  grep -Ei '^(HTTP|Retry-After)' | tr -d '\r' | xargs)"
echo "    then the right password from the same address: $right"
unknown="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/auth/login" \
  -H 'Content-Type: application/json' -d '{"username": "bob", "password": "x"}')"
echo "    another username from the same address: $unknown"
case "$codes" in "401 401 401 401 401 401 401 401 401 401 429 "*) ;; *) FOUND=1 ;; esac
case "$right" in *" 429 "*"Retry-After"*) ;; *) FOUND=1 ;; esac
stop_server

# -- verdict ----------------------------------------------------------------------
errors=$(cat "$WORK"/access-*.log | awk '$9 ~ /^5/' | wc -l)
total=$(cat "$WORK"/access-*.log | wc -l)
echo "--- server answers: $total requests, $errors with a 5xx status"
[ "$errors" -eq 0 ] || FOUND=1
if grep -q "Traceback" "$WORK"/error-*.log; then
  echo "    tracebacks in the server log: see $WORK/error-*.log"
  FOUND=1
fi
if [ "$FOUND" -eq 0 ]; then
  echo "== result: no injection, no guessed session, no 5xx; throttle held"
else
  echo "== result: FINDINGS above (work files kept in $WORK)"
fi
exit "$FOUND"
