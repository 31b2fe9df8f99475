#!/usr/bin/env bash
# Table 1: accuracy with each subset of modalities (CTM fusion), VE-8 (10 splits) and YF-6 (public split).
#   bash runs/table1.sh                 # one GPU (or CPU), run after runs/prepare.sh
#   NGPU=4 bash runs/table1.sh          # each run under torchrun on 4 GPUs
#   DRY=1 bash runs/table1.sh           # print the commands only
# Re-running resumes: finished run directories are skipped.
source "$(dirname "$0")/common.sh"
for stem in ctm-image ctm-motion ctm-audio ctm-image-motion ctm-image-audio ctm-motion-audio ctm-image-motion-audio; do
    video_dataset ve8 "$stem"
    video_dataset yf6 "$stem"
done
collect 1 "$OUT/ve8" "$OUT/yf6"
