# Shared by the runs/table*.sh scripts; source it, do not run it.
#
# Environment (all optional):
#   DATA=data        prepared data (see runs/prepare.sh): labels CSVs and feature stores
#   OUT=runs/out     run directories and collected tables
#   NGPU=1           GPUs per run: 1 runs `tam train`, N > 1 runs `torchrun --nproc_per_node=N`
#   SPLITS="01 .. 10" VE-8 splits to run
#   DRY=1            print the commands instead of running them
set -euo pipefail
DATA=${DATA:-data}
OUT=${OUT:-runs/out}
NGPU=${NGPU:-1}
SPLITS=${SPLITS:-"01 02 03 04 05 06 07 08 09 10"}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

# train CONFIG RUN_DIR [section.key=value ...]: one run, each override passed as `--set section.key=value`;
# skipped when RUN_DIR/results.json exists.
train() {
    local config=$1 run_dir=$2
    shift 2
    if [ -f "$run_dir/results.json" ]; then
        echo "done already: $run_dir"
        return 0
    fi
    local cmd tam_bin
    tam_bin=$(command -v tam || true)
    if [ -z "$tam_bin" ]; then
        echo "error: tam is not on PATH (activate the environment, e.g. source .venv/bin/activate)" >&2
        exit 1
    fi
    if [ "$NGPU" -gt 1 ]; then
        cmd=(torchrun --standalone --nproc_per_node="$NGPU" "$tam_bin" train)
    else
        cmd=(tam train)
    fi
    cmd+=(--config "$config" --run-dir "$run_dir")
    local o
    for o in "$@"; do
        cmd+=(--set "$o")
    done
    echo "+ ${cmd[*]}"
    if [ -z "${DRY:-}" ]; then
        "${cmd[@]}"
    fi
}

# video_dataset DATASET CONFIG_STEM: every split of VE-8, or YF-6's public split, with configs/DATASET/STEM.yaml.
video_dataset() {
    local ds=$1 stem=$2 store=${3:-$DATA/$1/features}
    if [ "$ds" = ve8 ]; then
        for k in $SPLITS; do
            train "configs/ve8/$stem.yaml" "$OUT/ve8/$stem/split$k" \
                data.store="$store" data.labels="$DATA/ve8/splits/ve8_split$k.csv"
        done
    else
        train "configs/yf6/$stem.yaml" "$OUT/yf6/$stem/public" \
            data.store="$store" data.labels="$DATA/yf6/yf6_public.csv"
    fi
}

# collect TABLE RUN_DIRS...: the paper's table from whatever has been run (markdown + CSV under $OUT).
collect() {
    local table=$1
    shift
    local dirs=()
    for d in "$@"; do [ -d "$d" ] && dirs+=("$d"); done
    if [ ${#dirs[@]} -eq 0 ]; then
        echo "nothing to collect for table $table yet"
        return 0
    fi
    echo "+ tam collect ${dirs[*]} --table $table --paper --out $OUT/table$table"
    if [ -z "${DRY:-}" ]; then
        tam collect "${dirs[@]}" --table "$table" --paper --out "$OUT/table$table"
    fi
}
