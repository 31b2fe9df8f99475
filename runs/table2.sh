#!/usr/bin/env bash
# Table 2: fusion strategies on image + motion + audio, VE-8 (10 splits) and YF-6 (public split).
# Upper part: concat, divide, joint attention baselines; lower part: inner-only, cross-only; CTM in both.
#   bash runs/table2.sh | NGPU=4 bash runs/table2.sh | DRY=1 bash runs/table2.sh
source "$(dirname "$0")/common.sh"
for fusion in concat divide joint inner cross ctm; do
    video_dataset ve8 "$fusion-image-motion-audio"
    video_dataset yf6 "$fusion-image-motion-audio"
done
collect 2 "$OUT/ve8" "$OUT/yf6"
