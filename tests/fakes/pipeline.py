"""A stand-in for a diffusers pipeline class: ``from_pretrained`` records what it was asked and loads
nothing, so tests can check which arguments (revision, variant, dtype) reach diffusers."""

from __future__ import annotations


class FakePipeline:
    calls: list[tuple[str, dict]] = []  # (location, keyword arguments) per from_pretrained call

    @classmethod
    def from_pretrained(cls, location, **kwargs):
        cls.calls.append((location, kwargs))
        return cls()

    def to(self, device):
        return self

    def set_progress_bar_config(self, **kwargs):
        pass
