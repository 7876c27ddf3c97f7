#!/usr/bin/env bash
# Train gald on several nodes under SLURM: one task per node, each running torchrun with one
# process per GPU; the rendezvous (c10d) is the first node of the allocation.
#
#   sbatch --nodes=2 scripts/slurm_train.sh --config configs/gald-cgnl_r101-d8_cityscapes-769x769.yaml
#   sbatch --nodes=2 scripts/slurm_train.sh --task detection --config configs/mask_rcnn-gald_r101-fpn_coco-1x.yaml
#
# Everything after the script's name goes to `python -m gald.train`. The config's batch_size is the
# global batch: 8 for the Cityscapes recipes (1 image per GPU on 8 GPUs; 2 nodes x 8 GPUs need a
# global batch of 16, as the coarse stage has), 16 for the detection recipes. A batch the world size
# does not divide is refused with one line before training. If a worker dies, torchrun restarts
# the group (up to GALD_MAX_RESTARTS times) and every worker resumes from runs/<name>/last.pt; a
# requeued job resumes too (--resume auto). runs/ must be on a filesystem every node shares.
#
#SBATCH --job-name=gald
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out

set -euo pipefail

GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${GALD_RDZV_PORT:-29500}

# --rdzv-conf join_timeout: a node that never arrives ends the job after this many seconds, not never
srun --kill-on-bad-exit=1 torchrun \
    --nnodes="$SLURM_NNODES" \
    --nproc_per_node="$GPUS_PER_NODE" \
    --rdzv-id="$SLURM_JOB_ID" \
    --rdzv-backend=c10d \
    --rdzv-endpoint="$HEAD_NODE:$PORT" \
    --rdzv-conf join_timeout="${GALD_JOIN_TIMEOUT:-900}" \
    --max-restarts="${GALD_MAX_RESTARTS:-3}" \
    -m gald.train --resume auto "$@"
