"""faceanon-video: remove people's identities from video, fast, with every face caught in every frame."""

__version__ = "0.1.0"
