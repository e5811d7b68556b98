#!/bin/sh
# Run cmocka unit-test binaries; print one summary line; non-zero on failure.
label=$1; shift
pass=0; fail=0; failed=""
for t in "$@"; do
	if "$t"; then pass=$((pass+1)); else fail=$((fail+1)); failed="$failed $(basename "$t")"; fi
done
[ -n "$failed" ] && echo "unit ($label) failed:$failed"
echo "unit-$label: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
