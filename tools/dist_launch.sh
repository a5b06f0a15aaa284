#!/usr/bin/env bash
# Usage: tools/dist_launch.sh NUM_PROCS SCRIPT [args...]   (SCRIPT relative to tools/)
# What tools/dist_train.sh and tools/dist_test.sh share: NUM_PROCS processes of SCRIPT through
# torch.distributed.run, one per GPU, or CPU processes (gloo) on a machine without CUDA.
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, PORT. PYTHON selects the interpreter.
set -euo pipefail
NPROCS=$1
TOOLS="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROCS" \
    "$TOOLS/$2" "${@:3}"
