#!/usr/bin/env bash
# Assemble the jars of a Kafka broker from Maven Central into the cache (outside git).
# Idempotent: does nothing when the jars are already there, or when KAFKA_HOME points at a distribution.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ -n "${KAFKA_HOME:-}" ]]; then
    [[ -d "$KAFKA_LIBS" ]] || die "KAFKA_HOME=$KAFKA_HOME has no libs/ directory (expected an unpacked Kafka distribution)"
    ls "$KAFKA_LIBS"/kafka_2.1[0-9]-*.jar >/dev/null 2>&1 || die "no kafka_2.*.jar in $KAFKA_LIBS"
    exit 0
fi

marker="$KAFKA_LIBS/.complete"
if [[ -f "$marker" && -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    exit 0
fi

command -v mvn >/dev/null 2>&1 || die "mvn not found (needed to fetch Kafka $KAFKA_VERSION from Maven Central; or set KAFKA_HOME to an unpacked Kafka distribution)"

parent="$(dirname "$KAFKA_LIBS")"
mkdir -p "$parent"
tmp="$(mktemp -d "$parent/libs.tmp.XXXXXX")"
mvn_log="$parent/fetch.log"
trap 'rm -rf "$tmp"' EXIT

repo_args=()
if [[ -n "${CALLWATCH_MAVEN_REPO:-}" ]]; then
    repo_args=("-Dmaven.repo.local=$CALLWATCH_MAVEN_REPO")
fi

echo "kafka: fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS" >&2
start=$SECONDS
if ! mvn -B -q -f "$KAFKA_DEPLOY_DIR/pom.xml" "${repo_args[@]}" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$mvn_log" 2>&1; then
    tail -n 20 "$mvn_log" >&2
    die "mvn could not fetch Kafka $KAFKA_VERSION (full output: $mvn_log)"
fi
[[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing (see $mvn_log)"
touch "$tmp/.complete"
rm -rf "$KAFKA_LIBS"
mv "$tmp" "$KAFKA_LIBS"
trap - EXIT
echo "kafka: fetched $(ls "$KAFKA_LIBS" | wc -l) jars in $((SECONDS - start)) s" >&2
