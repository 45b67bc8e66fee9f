#!/usr/bin/env bash
# Set a checkout up for development: after it, `python3 -m pytest -q` passes with no test
# skipped. It installs
#   - the system tools of scripts/system-tools.txt that are missing (apt-get, as root or with
#     sudo; elsewhere it names what to install and stops),
#   - this package, editable, with the dev extra, at the versions of constraints.txt,
#   - the Apache Kafka jars the embedded test broker runs from (infra/kafka/fetch.sh).
# Each step first checks, and does nothing when all is there: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }

# --- system tools -----------------------------------------------------------------------------
missing=() packages=()
while read -r command package _; do
  [[ -z "$command" || "$command" == \#* ]] && continue
  if ! command -v "$command" >/dev/null; then
    missing+=("$command")
    [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
  fi
done <scripts/system-tools.txt

if ((${#missing[@]} == 0)); then
  say "system tools: all found"
else
  sudo=()
  ((EUID == 0)) || ! command -v sudo >/dev/null || sudo=(sudo)
  if ! command -v apt-get >/dev/null || ((EUID != 0 && ${#sudo[@]} == 0)); then
    echo "setup: missing ${missing[*]}: install them (Debian/Ubuntu packages:" \
      "${packages[*]}), then run bash scripts/setup.sh again" >&2
    exit 1
  fi
  say "installing ${packages[*]} (for ${missing[*]})"
  # The package lists are fetched only now: on a machine that has every tool, not at all.
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${packages[@]}" >/dev/null
fi

# --- the Python package -----------------------------------------------------------------------
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: agensbus needs Python 3.11 or newer; python3 is $(python3 -V 2>&1)" >&2
  exit 1
fi
# Installed means: every package of the dev extra at its constraints.txt version, the
# agensbus command on PATH, and `import services` finding this checkout (the editable
# install, or PYTHONPATH pointing here).
here="$(cd / && python3 -c 'import services; print(services.__path__[0])' 2>/dev/null || true)"
if python3 scripts/constraints.py --check >/dev/null 2>&1 && command -v agensbus >/dev/null &&
  [[ "$here" == "$(pwd -P)/services" ]]; then
  say "Python packages: installed as constraints.txt pins them"
else
  say "installing agensbus (editable, extra dev) with constraints.txt"
  python3 -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
fi

# --- the Kafka jars ---------------------------------------------------------------------------
bash infra/kafka/fetch.sh
say "Kafka jars: in place"

say "done; run the tests with: python3 -m pytest -q"
