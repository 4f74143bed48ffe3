"""The face vault end to end: anonymize with --vault, then restore and verify through the CLI."""

from __future__ import annotations

import json
import struct

import av
import numpy as np
import pytest

from faceanon_video.cli import main
from faceanon_video.config import RunConfig
from faceanon_video.errors import ConfigError
from faceanon_video.track.seeds import load_key
from faceanon_video.vault import MAGIC, SALT_BYTES, VaultReader
from tests.conftest import CARPHONE, DATA, HAMILTON, decode_all

IDENTITIES = DATA / "images" / "identities"


def anonymize(source, tmp, *span: str) -> tuple:
    key = tmp / "key"
    key.write_text("0123456789abcdef" * 4 + "\n")
    video, vault = tmp / "anon.mp4", tmp / "anon.favault"
    assert main([str(source), "-o", str(video), "--key-file", str(key), "--vault", str(vault), "-q", *span]) == 0
    return video, vault, key


@pytest.fixture(scope="module")
def carphone(tmp_path_factory):
    return anonymize(CARPHONE, tmp_path_factory.mktemp("carphone"), "--end", "1")


@pytest.fixture(scope="module")
def carphone_exact(tmp_path_factory):
    return anonymize(CARPHONE, tmp_path_factory.mktemp("carphone_exact"), "--end", "1", "--vault-quality", "exact")


@pytest.fixture(scope="module")
def hamilton(tmp_path_factory):
    # 3.4-4.6 s: Lin-Manuel Miranda faces the camera (checked with verify over the whole clip); Barack
    # Obama is in the audience later (from ~8.5 s), not in this span.
    return anonymize(HAMILTON, tmp_path_factory.mktemp("hamilton"), "--start", "3.4", "--end", "4.6")


def face_boxes(vault, key) -> dict[int, list[tuple[int, int, int, int]]]:
    with VaultReader(vault, load_key(key)) as reader:
        return {record.frame_index: [face.xyxy for face in record.faces] for record in reader}


def mean_abs_diff(frames_a, frames_b, boxes) -> float:
    diffs = [
        np.abs(frames_a[i][y0:y1, x0:x1].astype(np.float32) - frames_b[i][y0:y1, x0:x1]).mean()
        for i, frame_boxes in boxes.items()
        for x0, y0, x1, y1 in frame_boxes
    ]
    return float(np.mean(diffs))


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name or p.name.startswith("restored"))


def test_restore_puts_the_original_faces_back(carphone_exact, tmp_path):
    video, vault, key = carphone_exact
    restored = tmp_path / "restored.mp4"
    # CRF 0 (lossless) so that what is left is the vault's accuracy, not the encoder's loss.
    assert main(["restore", str(video), "--vault", str(vault), "--key-file", str(key), "-o", str(restored), "--crf", "0", "-q"]) == 0
    original, original_pts = decode_all(CARPHONE)
    anonymized, anonymized_pts = decode_all(video)
    back, back_pts = decode_all(restored)
    boxes = face_boxes(vault, key)
    assert len(back) == len(anonymized) == 30 and len(boxes) >= 25  # one face, in (nearly) every frame
    assert back_pts == anonymized_pts == original_pts[:30]
    anonymized_error = mean_abs_diff(anonymized, original, boxes)
    restored_error = mean_abs_diff(back, original, boxes)
    assert anonymized_error > 10, "the faces were not anonymized"
    assert restored_error < 1.0 < anonymized_error / 10, (restored_error, anonymized_error)


def test_restore_with_default_quality_and_audio(hamilton, tmp_path):
    video, vault, key = hamilton
    restored = tmp_path / "restored.mp4"
    assert main(["restore", str(video), "--vault", str(vault), "--key-file", str(key), "-o", str(restored), "-q"]) == 0
    with av.open(str(restored)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]
    anonymized, _ = decode_all(video)
    back, _ = decode_all(restored)
    with av.open(str(HAMILTON)) as container:  # the span the run kept: frames 3.4 s to 4.6 s after the start
        start = container.streams.video[0].start_time * container.streams.video[0].time_base
        original = [f.to_ndarray(format="bgr24") for f in container.decode(video=0) if 3.4 <= f.time - start <= 4.6]
    boxes = face_boxes(vault, key)
    assert len(original) == len(back) == len(anonymized)
    assert mean_abs_diff(back, original, boxes) < mean_abs_diff(anonymized, original, boxes) / 5


def restore_fails(video, vault, key, tmp_path, capsys) -> str:
    out = tmp_path / "restored.mp4"
    code = main(["restore", str(video), "--vault", str(vault), "--key-file", str(key), "-o", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert not out.exists() and leftovers(tmp_path) == [], "a failed restore left a file behind"
    assert err.count("\n") == 1, err
    return err


def test_wrong_key_is_one_line_and_writes_nothing(carphone, tmp_path, capsys):
    video, vault, _ = carphone
    other = tmp_path / "other.key"
    other.write_text("fedcba9876543210" * 4)
    assert "wrong key" in restore_fails(video, vault, other, tmp_path, capsys)


def _record_offsets(data: bytes) -> list[int]:
    offset = data.index(b"\n", len(MAGIC) + SALT_BYTES) + 1
    offsets = []
    while offset < len(data):
        offsets.append(offset)
        offset += 4 + struct.unpack(">I", data[offset : offset + 4])[0]
    return offsets


@pytest.mark.parametrize("where", ["salt", "header", "first record", "middle record", "trailer", "cut short"])
def test_tampered_vault_is_rejected(carphone, tmp_path, capsys, where):
    video, vault, key = carphone
    data = bytearray(vault.read_bytes())
    records = _record_offsets(bytes(data))
    position = {
        "salt": len(MAGIC) + 3,
        "header": len(MAGIC) + SALT_BYTES + 5,
        "first record": records[0] + 4 + 8 + 12 + 40,  # inside the ciphertext
        "middle record": records[len(records) // 2] + 100,
        "trailer": len(data) - 1,  # the trailer's tag
    }.get(where)
    if position is None:
        del data[-10:]
    else:
        data[position] ^= 0x01
    tampered = tmp_path / "tampered.favault"
    tampered.write_bytes(bytes(data))
    assert "wrong key, or the vault is damaged" in restore_fails(video, tampered, key, tmp_path, capsys)


def test_records_cannot_be_moved_to_another_frame(carphone, tmp_path):
    video, vault, key = carphone
    data = vault.read_bytes()
    first, second, third = _record_offsets(data)[:3]
    head = struct.Struct(">Iq")
    (_, index_0), (_, index_1) = head.unpack_from(data, first), head.unpack_from(data, second)

    body_0, body_1 = data[first + head.size : second], data[second + head.size : third]  # nonce + ciphertext
    # Swap the two records' contents, each keeping the other's frame index (framing stays valid).
    swapped = (
        data[:first]
        + struct.pack(">Iq", 8 + len(body_1), index_0) + body_1
        + struct.pack(">Iq", 8 + len(body_0), index_1) + body_0
        + data[third:]
    )
    path = tmp_path / "swapped.favault"
    path.write_bytes(swapped)
    with VaultReader(path, load_key(key)) as reader:  # the framing and the trailer are intact
        for index in (index_0, index_1):
            with pytest.raises(ConfigError, match="wrong key"):
                reader.record(index)


def test_vault_needs_a_key_file(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--key-file"):
        RunConfig(vault="faces.favault")
    assert main([str(CARPHONE), "-o", str(tmp_path / "x.mp4"), "--vault", str(tmp_path / "v.favault")]) == 2
    assert "--vault needs --key-file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failed_run_leaves_no_vault(tmp_path):
    key = tmp_path / "key"
    key.write_text("0123456789abcdef" * 2)
    vault = tmp_path / "v.favault"
    assert main([str(CARPHONE), "-o", str(tmp_path / "missing" / "x.mp4"), "--key-file", str(key), "--vault", str(vault), "-q"]) != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_restore_refuses_a_video_the_vault_was_not_written_for(carphone, hamilton, tmp_path, capsys):
    _, vault, key = carphone
    other_video, _, _ = hamilton
    assert "does not match vault" in restore_fails(other_video, vault, key, tmp_path, capsys)


def verify(hamilton, face, capsys, *extra) -> tuple[int, dict]:
    video, vault, key = hamilton
    code = main(["verify", str(video), "--vault", str(vault), "--key-file", str(key), "--face", str(face), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_verify_finds_the_person_in_the_video(hamilton, capsys):
    code, result = verify(hamilton, IDENTITIES / "lin-manuel-miranda.png", capsys)
    assert code == 0 and result["found"]
    best = max(result["tracks"], key=lambda t: t["best_similarity"] or -1)
    assert best["match"] and best["best_similarity"] > 0.5 and best["frames"] >= 20


@pytest.mark.parametrize("face", ["obama.jpg", "johns/John_Salley/000179_02159509.jpg"])
def test_verify_does_not_find_someone_else(hamilton, capsys, face):
    code, result = verify(hamilton, IDENTITIES / face, capsys)
    assert code == 1 and not result["found"]
    checked = [t for t in result["tracks"] if t["checked"]]
    assert checked and all(t["best_similarity"] < 0.363 for t in checked)


def test_several_inputs_need_a_vault_folder_and_live_refuses_a_vault(tmp_path):
    from faceanon_video.cli import main
    from tests.conftest import BIKES, CARPHONE

    key = tmp_path / "k"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    out = tmp_path / "out"
    out.mkdir()
    code = main([str(CARPHONE), str(BIKES), "-o", str(out), "--key-file", str(key), "--vault", str(tmp_path / "one.favault"), "-q"])
    assert code == 2 and list(out.iterdir()) == []
    assert main(["udp://127.0.0.1:9", "--key-file", str(key), "--vault", str(tmp_path / "v"), "-o", str(tmp_path / "x.mp4")]) == 2


def test_vault_is_bound_to_its_own_output_not_a_lookalike(carphone, tmp_path, capsys):
    # Same source, span and settings but another fill: same size, frame count and timing; only the
    # sealed digest of the encoded video tells them apart.
    video, vault, key = carphone
    lookalike = tmp_path / "lookalike.mp4"
    assert main([str(CARPHONE), "-o", str(lookalike), "--end", "1", "--mode", "mosaic", "-q"]) == 0
    err = restore_fails(lookalike, vault, key, tmp_path, capsys)
    assert "is not the video vault" in err
    face = DATA / "images" / "astronaut.png"
    assert main(["verify", str(lookalike), "--vault", str(vault), "--key-file", str(key), "--face", str(face)]) == 2
    assert "is not the video vault" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".ts"])
def test_vault_binding_holds_in_every_container(tmp_path, suffix):
    key = tmp_path / "key"
    key.write_text("0123456789abcdef" * 4 + "\n")
    video, vault = tmp_path / f"anon{suffix}", tmp_path / "anon.favault"
    assert main([str(CARPHONE), "-o", str(video), "--key-file", str(key), "--vault", str(vault), "-q", "--end", "0.5"]) == 0
    restored = tmp_path / f"restored{suffix}"
    assert main(["restore", str(video), "--vault", str(vault), "--key-file", str(key), "-o", str(restored), "-q"]) == 0
    assert restored.exists()
