"""``faceanon-video eval`` end to end through the CLI."""

import json
from pathlib import Path

from faceanon_video.cli import main

TRAINING = Path(__file__).resolve().parents[1] / "data" / "images" / "annotated" / "training.xml"


def test_eval_table(capsys):
    assert main(["eval", str(TRAINING), "--mode", "solid", "--identity", "none"]) == 0
    out = capsys.readouterr().out
    assert "faces scored           18" in out
    assert "detection recall" in out


def test_eval_json_none_mode_leaks_everything(capsys):
    assert main(["eval", str(TRAINING), "--mode", "none", "--identity", "sface", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["faces"] == 18 and report["leaked"] == 18 and report["leak_rate"] == 1.0
    sface = report["reidentification"]["sface"]
    # Untouched faces are re-identified whenever landmarks could be found on them.
    assert sface["faces"] >= 15 and sface["reidentified"] == sface["faces"]


def test_eval_scores_existing_outputs(tmp_path, capsys):
    import shutil

    for image in TRAINING.parent.glob("*.jpg"):
        shutil.copy(image, tmp_path / image.name)
    assert main(["eval", str(TRAINING), "--anonymized", str(tmp_path), "--identity", "none", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leak_rate"] == 1.0 and report["detection"] is None


def test_eval_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", str(TRAINING), "--identity", "arcface"]) == 2
    assert "unknown --identity arcface" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.xml")]) == 2
    assert "not found" in capsys.readouterr().err
