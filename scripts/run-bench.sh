#!/bin/sh
# Run every benchmark in bench/ (each prints its own table).
cd "$(dirname "$0")/.."
rc=0
for b in bench/*; do
	[ -x "$b" ] && [ -f "$b" ] || continue
	echo "=== $b"
	"$b" || rc=1
done
exit $rc
