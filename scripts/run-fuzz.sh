#!/bin/sh
# Run each libFuzzer harness for a bounded number of iterations.
# FUZZ_RUNS overrides the default count.
runs=${FUZZ_RUNS:-20000}
pass=0; fail=0
for f in "$@"; do
	name=$(basename "$f")
	corpus=tests/fuzz/corpus/$name
	work=$(mktemp -d)
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null
	art=build/fuzz-artifacts/$name
	mkdir -p "$art"
	if "$f" -runs="$runs" -max_total_time=120 -rss_limit_mb=2048 -timeout=10 \
		-artifact_prefix="$art/" "$work" >"$work.log" 2>&1; then
		pass=$((pass+1))
		echo "fuzz $name: ok ($(grep -o 'Done [0-9]* runs' "$work.log" || echo "$runs runs"))"
	else
		fail=$((fail+1)); echo "fuzz $name: FAILED (input kept in $art)"; tail -40 "$work.log"
	fi
	rm -rf "$work" "$work.log"
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
