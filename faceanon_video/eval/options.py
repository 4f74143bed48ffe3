"""The options ``faceanon-video eval`` and ``bench`` share now live in ``faceanon_video.options``
(one table with the main command); kept importable from here."""

from faceanon_video.options import add_pipeline_arguments, config_from_args

__all__ = ["add_pipeline_arguments", "config_from_args"]
