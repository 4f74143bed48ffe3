import pytest

from faceanon_video.testing.synthetic import render_clip


@pytest.fixture(scope="session")
def synthetic_clip():
    """The default six-face scenario, 90 frames at 640x272 (seed 0), rendered once per session."""
    return render_clip(90, seed=0)
