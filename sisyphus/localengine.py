"""``sisyphus.localengine.LocalEngine``: where the real Sisyphus has it (settings files import it from here)."""

from sisyphus.engine import LocalEngine

__all__ = ["LocalEngine"]
