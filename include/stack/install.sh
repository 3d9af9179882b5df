#!/usr/bin/env bash
# Installs everything the local stack needs, idempotently; a second run downloads nothing.
#   - Debian packages: postgresql, redis-server, chromium (headless, for the Airflow UI test),
#     docker-compose (only its `config` runs: the test that checks docker/compose.yaml)
#   - a Python venv in the state dir with requirements.txt (pinned by include/stack/constraints.txt)
#   - JVM artifacts from Maven Central (include/stack/jars/pom.xml) into the state dir
# Each step records a stamp (hash of its inputs) and is skipped while the stamp matches.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${CDC_STATE_DIR:-$ROOT/.stack}"
STAMPS="$STATE_DIR/stamps"
PYTHON="${CDC_PYTHON:-python3}"
mkdir -p "$STAMPS"

step() { printf '==> %s\n' "$*"; }
elapsed() { printf '    done in %ss\n' "$(( $(date +%s) - $1 ))"; }
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null; then sudo "$@";
  else echo "error: '$*' needs root; run it as root or install sudo" >&2; exit 1; fi
}

# --- toolchain checks: clear errors instead of stack traces later ---
"$PYTHON" - <<'PY' || { echo "error: Python 3.10+ is needed (set CDC_PYTHON to one)" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
command -v java >/dev/null || [ -n "${JAVA_HOME:-}" ] || { echo "error: Java 17+ not found; install openjdk-17-jdk-headless" >&2; exit 1; }
command -v mvn >/dev/null || { echo "error: Maven not found; install maven (apt-get install maven)" >&2; exit 1; }

# --- Debian packages ---
apt_pkgs=(postgresql redis-server chromium docker-compose)
missing=()
for pkg in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  t=$(date +%s); step "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elapsed "$t"
else
  step "Debian packages present (${apt_pkgs[*]})"
fi

# --- Python venv ---
py_stamp=$(stamp_of "$ROOT/requirements.txt" "$ROOT/include/stack/constraints.txt")
if [ ! -x "$STATE_DIR/venv/bin/python" ] || ! fresh python "$py_stamp"; then
  t=$(date +%s); step "Python venv: pip install -r requirements.txt (first time: about 2 minutes)"
  [ -x "$STATE_DIR/venv/bin/python" ] || "$PYTHON" -m venv "$STATE_DIR/venv"
  "$STATE_DIR/venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$STATE_DIR/venv/bin/pip" install -q --disable-pip-version-check \
    -r "$ROOT/requirements.txt" -c "$ROOT/include/stack/constraints.txt"
  echo "$py_stamp" > "$STAMPS/python"
  elapsed "$t"
else
  step "Python venv up to date ($STATE_DIR/venv)"
fi

# --- JVM artifacts ---
poms=("$ROOT"/include/stack/jars/pom.xml "$ROOT"/include/stack/jars/*/pom.xml)
mapfile -t java_sources < <(find "$ROOT/include/stack/jars" -name '*.java' | sort)
jvm_stamp=$(stamp_of "${poms[@]}" "${java_sources[@]}")
if ! fresh jars "$jvm_stamp"; then
  t=$(date +%s); step "Maven: Kafka, Kafka Connect, Debezium, Cassandra, Spark's Kafka connector and our Connect transforms"
  rm -rf "$STATE_DIR/jars"
  # Maven 3.8 prints colour codes even in batch mode; strip them from the output.
  mvn -B -q -Dstyle.color=never -f "$ROOT/include/stack/jars/pom.xml" -Dstack.dir="$STATE_DIR" package 2>&1 \
    | sed 's/\x1b\[[0-9;]*m//g'
  echo "$jvm_stamp" > "$STAMPS/jars"
  elapsed "$t"
else
  step "JVM artifacts up to date ($STATE_DIR/jars)"
fi
