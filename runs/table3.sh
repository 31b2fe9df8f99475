#!/usr/bin/env bash
# Table 3: masking strategies (random 10 / 20 / 30 % of the words, or every emotional word) for TSC
# pre-training, each fine-tuned on VE-8 (10 splits) and YF-6 with the paper's fine-tuning settings.
#   DANMAKU=danmaku/ LEXICON=lexicon.xlsx TSC_STORE=feats/ bash runs/table3.sh
#   NGPU=4 ... bash runs/table3.sh | DRY=1 bash runs/table3.sh
#   DANMAKU, LEXICON  inputs of `tam comments prepare` (one corpus per masking under $DATA/tsc/corpus-<masking>)
#   DURATIONS         optional: CSV video,duration or the folder of the videos
#   TSC_STORE         feature store of the corpus videos
# Re-running resumes (corpora, pre-training and fine-tuning runs). Collected into $OUT/table3.md.
TSC_TABLE_FUNCTIONS_ONLY=1 source "$(dirname "$0")/table4.sh"
TABLE=3
for masking in random10 random20 random30 emotion; do
    corpus="$DATA/tsc/corpus-$masking"
    cmd=(tam comments prepare "${DANMAKU:?set DANMAKU to the danmaku files}" --lexicon "${LEXICON:?set LEXICON}"
         --masking "$masking" --out "$corpus")
    [ -n "${DURATIONS:-}" ] && cmd+=(--durations "$DURATIONS")
    echo "+ ${cmd[*]}"
    if [ -z "${DRY:-}" ]; then "${cmd[@]}"; fi
    pretrain configs/pretrain/paper.yaml "$OUT/pretrain/$masking" "$corpus"
    finetune "$masking" "$OUT/pretrain/$masking/pretrained.safetensors"
done
collect_pretrain_table
