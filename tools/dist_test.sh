#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args...]
# One process per GPU, or NUM_PROCS CPU processes (gloo) on a machine without CUDA.
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, PORT. PYTHON selects the interpreter.
set -euo pipefail
exec "$(dirname "$0")/dist_launch.sh" "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
