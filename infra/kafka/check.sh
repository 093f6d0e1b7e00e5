#!/bin/sh
# Are the broker's jars in $1 complete? `make kafka` runs this after Maven copied them: the
# broker's main class (kafka.Kafka) answers with the version the pom pins, the storage tool's
# main class (kafka.tools.StorageTool) runs, and slf4j finds its log4j2 binding (without one the
# broker would start and log nothing). Prints the version; fails with the reason.
set -eu
libs=${1:-.kafka/libs}
pom=$(dirname "$0")/pom.xml
want=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
err=$(mktemp)
trap 'rm -f "$err"' EXIT
got=$(java -cp "$libs/*" kafka.Kafka --version 2>"$err") || {
    cat "$err" >&2; echo "kafka.Kafka does not load from $libs" >&2; exit 1; }
if [ "$got" != "$want" ]; then
    echo "kafka.Kafka in $libs is version '$got', the pom pins '$want'" >&2; exit 1
fi
if grep -q SLF4J "$err"; then
    cat "$err" >&2; echo "no slf4j binding in $libs: the broker would log nothing" >&2; exit 1
fi
java -cp "$libs/*" kafka.tools.StorageTool random-uuid >/dev/null 2>"$err" || {
    cat "$err" >&2; echo "kafka.tools.StorageTool does not run from $libs" >&2; exit 1; }
echo "Apache Kafka $got in $libs"
