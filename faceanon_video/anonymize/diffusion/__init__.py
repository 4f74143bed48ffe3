"""Diffusion face anonymizer ("Face Anonymization Made Simple", Kung et al. 2025) on stock diffusers.

``build_diffusion_anonymizer(config)`` is what the pipeline calls for ``--mode diffusion``; the
parts live in ``models`` (loading), ``attention`` (reference processors), ``backend`` (the tensor
contract), ``sampling``, ``align`` and ``anonymizer``.
"""

from .anonymizer import DiffusionAnonymizer, build_diffusion_anonymizer
from .config import DiffusionSettings

__all__ = ["DiffusionAnonymizer", "DiffusionSettings", "build_diffusion_anonymizer"]
