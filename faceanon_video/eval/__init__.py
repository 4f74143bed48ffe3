"""Evaluation: leak rate, background damage, detection recall/precision, re-identification (``faceanon-video eval``)."""
