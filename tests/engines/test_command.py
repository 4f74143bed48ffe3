"""``faceanon-video export`` through the real CLI entry point."""

from __future__ import annotations

from faceanon_video import cli


def test_export_command_writes_graphs_and_reports(tiny_model_dir, tiny_engine_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_engine_dir.glob("*.onnx")}
    argv = ["export", "--model-dir", str(tiny_model_dir), "--out", str(tiny_engine_dir), "--max-faces", "2", "--tensorrt", "auto"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{tiny_engine_dir}: 6 ONNX graphs, fp32, opset 17" in out
    assert {p.name: p.stat().st_mtime_ns for p in tiny_engine_dir.glob("*.onnx")} == before  # up to date


def test_export_command_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FACEANON_MODEL_DIR", raising=False)
    assert cli.main(["export", "--out", str(tmp_path / "e")]) == 2
    assert "export needs --model-dir" in capsys.readouterr().err
    assert cli.main(["export", "--model-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "e")]) != 0
