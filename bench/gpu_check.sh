#!/usr/bin/env bash
# GPU check: the CUDA tests (tests/gpu: bf16 training, resume, pre-training, extraction, predict, each against the
# CPU) and then the ordinary tests whose code picks CUDA by itself when there is one (device "auto").
#
#   on your own GPU machine, project installed (make):   bash bench/gpu_check.sh        (PYTHON=... to choose)
#   with the session's device tool:                      run(command="bash bench/gpu_check.sh", carry=[".whl"])
#
# .whl/ (optional, git-ignored) holds wheels of packages the machine lacks (PyAV); they are installed to /tmp/site.
#   made with: python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#              --platform manylinux_2_28_x86_64 -d .whl av==18.1.0      (35 MiB; the only package tam needs there)
# The project itself is not installed (its torch pin may differ from the machine's torch): src/ goes on PYTHONPATH.
# The log goes to $OUT/gpu_log.txt when OUT is set, else /tmp/gpu_log.txt. Exit status: 0 all passed, 3 no CUDA,
# else that of the first failing phase (GPU_CHECK_ALLOW_CPU=1 runs on without CUDA: tests/gpu then skip, to check
# this script). Expected time on one H200: about 2-3 minutes (phase 1 ~1 min, phase 2 ~1 min, plus imports).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
LOG=${OUT:+$OUT/gpu_log.txt}
LOG=${LOG:-/tmp/gpu_log.txt}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# ordinary tests that run on CUDA by themselves on a GPU machine (evaluate_run and pick_device use "auto")
AUTO_TESTS=(
  tests/encoders/test_cli_support.py
  tests/eval/test_evaluate.py
  tests/infer
  "tests/train/test_loop.py::test_select_on_validation_loss_warns_about_a_tiny_validation_split"
  "tests/train/test_loop.py::test_select_last_tests_the_last_epoch_whatever_validation_says"
)

main() {
  if compgen -G ".whl/*.whl" > /dev/null; then
    echo "== installing $(ls .whl/*.whl | wc -l) wheel(s) from .whl/ to /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || return 2
    export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
  echo "== machine"
  date -u
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used \
    --format=csv
  "$PY" - <<'EOF' || return $?
import os, sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA runtime", torch.version.cuda)
if not torch.cuda.is_available():
    print("NO CUDA: torch sees no GPU; the GPU checks cannot run here")
    if os.environ.get("GPU_CHECK_ALLOW_CPU") != "1":  # 1: go on anyway (tests/gpu then skip: checks the script)
        sys.exit(3)
else:
    print("device", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0),
          "| bf16", torch.cuda.is_bf16_supported(), "| nccl", torch.distributed.is_nccl_available())
import av, tam
print("tam", tam.__version__, "from", tam.__file__, "| av", av.__version__)
EOF
  local t0=$SECONDS rc1 rc2
  echo "== phase 1: tests/gpu (CUDA vs CPU)"
  timeout 240 "$PY" -m pytest -q -ra -p no:cacheprovider --durations=8 tests/gpu
  rc1=$?
  echo "== phase 1 exit $rc1 ($((SECONDS - t0)) s)"
  t0=$SECONDS
  echo "== phase 2: ordinary tests that choose CUDA by themselves"
  timeout 150 "$PY" -m pytest -q -ra -p no:cacheprovider --durations=5 "${AUTO_TESTS[@]}"
  rc2=$?
  echo "== phase 2 exit $rc2 ($((SECONDS - t0)) s)"
  echo "GPU CHECK: tests/gpu exit $rc1; auto-device tests exit $rc2 (0 = passed, 124 = timed out)"
  [ "$rc1" -ne 0 ] && return "$rc1"
  return "$rc2"
}

main 2>&1 | tee "$LOG"
