"""``io.outputs.OutputSet``: the outputs of one input appear together or not at all."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from faceanon_video.errors import OutputError
from faceanon_video.io.outputs import AtomicOutput, OutputSet, with_output_set, write_atomic


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_nothing_appears_until_commit_then_everything(tmp_path):
    outputs = OutputSet()
    write_atomic(tmp_path / "a.json", "A", outputs=outputs)
    write_atomic(tmp_path / "b.md", b"B", outputs=outputs)
    assert names(tmp_path) == [f".a.partial-{os.getpid()}.json", f".b.partial-{os.getpid()}.md"]
    outputs.commit()
    assert names(tmp_path) == ["a.json", "b.md"]
    assert (tmp_path / "a.json").read_text() == "A" and (tmp_path / "b.md").read_bytes() == b"B"


def test_a_failure_in_the_block_leaves_no_file_and_the_old_ones_untouched(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with pytest.raises(OutputError, match="no space left"), OutputSet() as outputs:
        write_atomic(tmp_path / "a.json", "new", outputs=outputs)
        write_atomic(tmp_path / "b.json", "new", outputs=outputs)
        raise OutputError("no space left on the disk")
    assert names(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_text() == "old"


def test_an_output_never_completed_is_refused_and_the_others_discarded(tmp_path):
    outputs = OutputSet()
    write_atomic(tmp_path / "a.json", "A", outputs=outputs)
    unfinished = outputs.add(AtomicOutput(tmp_path / "video.mp4"))
    unfinished.temp.write_bytes(b"half")
    with pytest.raises(RuntimeError, match="video.mp4"):
        outputs.commit()
    assert names(tmp_path) == []


@pytest.mark.parametrize("failing", [1, 2])
def test_a_rename_failing_midway_puts_back_the_ones_already_renamed(tmp_path, monkeypatch, failing):
    """--overwrite: the user's previous file comes back; a new file that had no previous one goes."""
    (tmp_path / "a.json").write_text("old a")
    (tmp_path / "c.json").write_text("old c")
    outputs = OutputSet()
    for name in ("a.json", "b.json", "c.json"):
        write_atomic(tmp_path / name, f"new {name}", outputs=outputs)
    calls = []

    def failing_move(real):  # a new destination is linked into place, an existing one renamed over
        def move(src, dst):
            calls.append(src)
            if ".partial-" in str(src) and len([c for c in calls if ".partial-" in str(c)]) == failing + 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(src, dst)

        return move

    monkeypatch.setattr(os, "replace", failing_move(os.replace))
    monkeypatch.setattr(os, "link", failing_move(os.link))
    with pytest.raises(OutputError, match="no space left on"):
        outputs.commit()
    monkeypatch.undo()
    assert names(tmp_path) == ["a.json", "c.json"]
    assert (tmp_path / "a.json").read_text() == "old a" and (tmp_path / "c.json").read_text() == "old c"


def test_the_previous_files_are_removed_once_the_set_is_in_place(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with OutputSet() as outputs:
        write_atomic(tmp_path / "a.json", "new", outputs=outputs)
        write_atomic(tmp_path / "b.json", "new", outputs=outputs)
    assert names(tmp_path) == ["a.json", "b.json"] and (tmp_path / "a.json").read_text() == "new"


def test_with_output_set_commits_once_at_the_outermost_run(tmp_path):
    seen = []

    @with_output_set
    def inner(name, *, outputs):
        write_atomic(tmp_path / name, name, outputs=outputs)
        seen.append(names(tmp_path))

    @with_output_set
    def outer(*, outputs):
        inner("a.json", outputs=outputs)
        inner("b.json", outputs=outputs)

    outer()
    assert all(not any(not n.startswith(".") for n in listing) for listing in seen)  # nothing in place before the end
    assert names(tmp_path) == ["a.json", "b.json"]
    inner("c.json")  # alone: its own set, committed when it returns
    assert names(tmp_path) == ["a.json", "b.json", "c.json"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_renames_waits_for_them(tmp_path, monkeypatch, signum):
    """Ctrl-C or SIGTERM (a KeyboardInterrupt, cli) landing just after the last rename used to be
    taken for a failed rename: the others were rolled back while the last stayed new (a new report
    beside the old video). The signal now waits until the set is committed, then interrupts."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name in ("a.json", "b.json"):
            (tmp_path / name).write_text("old")
        outputs = OutputSet()
        write_atomic(tmp_path / "a.json", "new", outputs=outputs)
        write_atomic(tmp_path / "b.json", "new", outputs=outputs)
        real_replace = os.replace

        def replace(src, dst):
            real_replace(src, dst)
            if str(dst).endswith("b.json"):  # the last rename is done: the signal lands now
                os.kill(os.getpid(), signum)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            outputs.commit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert names(tmp_path) == ["a.json", "b.json"]
    assert (tmp_path / "a.json").read_text() == "new" and (tmp_path / "b.json").read_text() == "new"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_discarding_a_temporary_file_never_created_on_a_read_only_folder_is_silent(tmp_path, monkeypatch, caplog):
    """unlink() of a missing file on a read-only file system fails with EROFS, not ENOENT: the
    run's one error line came with a warning per output about a file that never existed."""
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if not self.exists():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    output = AtomicOutput(tmp_path / "never.json")
    with caplog.at_level("WARNING"):
        output.discard()
    assert caplog.records == []


def test_a_destination_another_run_created_meanwhile_is_not_replaced(tmp_path):
    """Two runs started together with one -o (no --overwrite) both passed the check at start, and the
    later commit silently replaced the earlier one's files (possibly one video with the other's vault)."""
    outputs = OutputSet()
    write_atomic(tmp_path / "a.mp4", "mine", outputs=outputs)
    write_atomic(tmp_path / "a.favault", "mine", outputs=outputs)
    (tmp_path / "a.favault").write_text("the other run's")  # committed by another run while this one worked
    with pytest.raises(OutputError, match="a.favault: written by another run meanwhile"):
        outputs.commit()
    assert names(tmp_path) == ["a.favault"] and (tmp_path / "a.favault").read_text() == "the other run's"


def test_a_destination_that_existed_at_the_start_is_replaced_as_before(tmp_path):
    (tmp_path / "a.json").write_text("old")
    outputs = OutputSet()
    write_atomic(tmp_path / "a.json", "new", outputs=outputs)  # --overwrite was checked by the caller
    write_atomic(tmp_path / "b.json", "new", outputs=outputs)
    outputs.commit()
    assert names(tmp_path) == ["a.json", "b.json"] and (tmp_path / "a.json").read_text() == "new"
