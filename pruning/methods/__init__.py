"""Pruning methods. Each scores every unit (higher = more important); plans are built from the scores.

The methods are registered in :mod:`pruning.registry`, their settings live in :mod:`pruning.config`.
"""
