"""Diffusion face anonymizer ("Face Anonymization Made Simple", Kung et al. 2025) on stock diffusers.

Heavy imports (torch, diffusers) stay in the submodules so ``import faceanon_video`` stays cheap.
"""
