"""`tam demo --quick` end to end, per stage: where a fresh machine's first minute goes.

Runs `tam.demo.run_pipeline(PipelineSpec.quick())` in a temporary folder (the default `tam demo` takes ~6
minutes here, over this suite's ~3-minute budget; its measured time is in docs/demo.md) and reports the
seconds of each stage, the extraction rate in video seconds per wall second, and the share of the total
spent extracting (random-init tiny encoders) measured in the same run.
"""

from __future__ import annotations

import tempfile


def run() -> dict[str, float | str]:
    from tam.demo.run import PipelineSpec, run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        s = run_pipeline(tmp, PipelineSpec.quick(), log=lambda text: None)
    stages = s["seconds_by_stage"]
    e = s["extraction"]
    return {"quick_total_s": round(s["seconds"], 1),
            **{f"{k.replace('-', '_')}_s": round(v, 1) for k, v in stages.items()},
            "extract_video_s_per_wall_s": round(e["segments"] / e["seconds"], 2),
            "extraction_share_of_total": round(e["seconds"] / s["seconds"], 3),
            "note": "quick world: 56 videos; default tam demo measured in docs/demo.md"}
