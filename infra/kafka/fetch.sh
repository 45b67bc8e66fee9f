#!/usr/bin/env bash
# Put the Apache Kafka broker jars named in pom.xml into the cache the embedded broker runs from:
# $AGENSBUS_KAFKA_HOME/lib, by default ~/.cache/agensbus/kafka-<version>/lib. A stamp holding the
# POM's hash makes a second run a no-op; a changed POM fetches again.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
pom="$here/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
home="${AGENSBUS_KAFKA_HOME:-$HOME/.cache/agensbus/kafka-$version}"
lib="$home/lib"
want="$(sha256sum "$pom" | cut -d' ' -f1)"

if [[ -f "$lib/.complete" && "$(cat "$lib/.complete")" == "$want" ]]; then
  exit 0
fi
if ! command -v mvn >/dev/null; then
  echo "fetch.sh: Maven (mvn) not found; install it (apt-get install maven) and run again" >&2
  exit 1
fi

mkdir -p "$home"
# Resolve into a fresh directory and swap it in whole, so an interrupted or concurrent fetch
# never leaves a lib/ that looks complete but is not.
partial="$(mktemp -d "$home/lib.partial.XXXXXX")"
trap 'rm -rf "$partial"' EXIT
# Maven's output is only worth reading when it fails (even -B -q prints colour codes).
if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$partial" >"$home/fetch.log" 2>&1; then
  cat "$home/fetch.log" >&2
  echo "fetch.sh: Maven could not resolve the Kafka jars (log above, also in $home/fetch.log)" >&2
  exit 1
fi
echo "$want" >"$partial/.complete"
rm -rf "$lib"
mv "$partial" "$lib"
trap - EXIT
echo "fetch.sh: Apache Kafka $version jars in $lib ($(ls "$lib" | wc -l) files)"
