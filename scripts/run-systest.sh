#!/bin/sh
# System tests: real processes, real peers.  pytest's summary is the last line.
set -e
cd "$(dirname "$0")/.."
exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs --durations=12 tests/system "$@"
