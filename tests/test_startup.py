"""Start-up of a plain file run: what it loads counts against every short clip (README: Recall)."""

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"

#: Modules a plain blur run of a file must never import: the optional extras' heavy libraries and
#: this package's modules for other kinds of run (live streams, Ray, plans, the progress bar of -q).
NOT_FOR_A_BLUR_RUN = ("torch", "diffusers", "transformers", "scipy", "flask", "ray", "tqdm", "faceanon_video.live", "faceanon_video.distributed", "faceanon_video.plan")

SCRIPT = """
import json, sys
from faceanon_video.cli import main
from faceanon_video.detect.base import onnx_session
code = main([sys.argv[1], "-o", sys.argv[2], "--mode", "blur", "-q"])
print(json.dumps({"code": code, "modules": sorted(sys.modules), "sessions": onnx_session.cache_info().currsize}))
"""


def test_a_plain_blur_run_loads_only_what_it_uses(tmp_path):
    # A subprocess: the test session itself has imported everything.
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(DATA / "carphone_pristine.mp4"), str(tmp_path / "out.mp4")], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["code"] == 0 and (tmp_path / "out.mp4").stat().st_size > 0
    loaded = [m for m in result["modules"] if any(m == name or m.startswith(name + ".") for name in NOT_FOR_A_BLUR_RUN)]
    assert loaded == []
    # Every detector of the run (full-frame and tile per worker thread, the re-detector) shares one session.
    assert result["sessions"] == 1
