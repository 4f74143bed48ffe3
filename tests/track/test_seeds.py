import numpy as np
import pytest

from faceanon_video.errors import ConfigError
from faceanon_video.track.seeds import MIN_KEY_BYTES, TrackSeeder, load_key, random_key


def test_same_key_same_seeds_and_ids_map_to_distinct_uint64():
    a, b = TrackSeeder(b"k" * 32), TrackSeeder(b"k" * 32)
    seeds = a.seeds_for(np.arange(1, 101))
    assert seeds.dtype == np.uint64
    assert np.array_equal(seeds, b.seeds_for(np.arange(1, 101)))
    assert len(set(seeds.tolist())) == 100
    assert all(0 <= s < 2**64 for s in seeds.tolist())


def test_other_key_other_seeds():
    assert TrackSeeder(b"k" * 32).seed_for(1) != TrackSeeder(b"j" * 32).seed_for(1)


def test_short_key_rejected():
    with pytest.raises(ConfigError):
        TrackSeeder(b"short")


def test_random_key_differs_per_call():
    assert len(random_key()) >= MIN_KEY_BYTES and random_key() != random_key()


def test_text_key_file_ignores_trailing_newline(tmp_path):
    (tmp_path / "a").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "b").write_text("0123456789abcdef0123456789abcdef")
    assert load_key(tmp_path / "a") == load_key(tmp_path / "b")


def test_binary_key_file_used_byte_for_byte(tmp_path):
    raw = bytes(range(200, 232)) + b"\n"
    (tmp_path / "k").write_bytes(raw)
    assert load_key(tmp_path / "k") == raw


@pytest.mark.parametrize("content", [b"", b"too short\n", b"  \n\n"])
def test_too_short_key_file_is_a_one_line_config_error(tmp_path, content):
    (tmp_path / "k").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_key(tmp_path / "k")
    assert "\n" not in str(info.value) and "need at least" in str(info.value)


def test_unreadable_key_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_key(tmp_path / "missing")
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_key(tmp_path)  # a directory
