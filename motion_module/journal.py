"""A journal of reversible edits to objects we do not own (the host's processing object, model,
sampler, UNet): each edit is made through the journal, which records how to undo it.

:meth:`Journal.undo` replays the records newest first, so every attribute ends up exactly as it
was, absent ones included. It goes on past a failing step and raises the first failure at the end,
and a second call does nothing. :meth:`Journal.scope` opens a nested journal for edits that end
earlier (one sampling call inside a generation): it is undone on its own, or with its parent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType

from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Step:
    undo: Callable[[], None]
    label: str


def _owns(obj: object, name: str) -> bool:
    """Whether ``name`` is set on ``obj`` itself (not only found on its class): instance
    dictionary, or a module's registered parameter, buffer or submodule."""
    if name in getattr(obj, "__dict__", {}):
        return True
    return isinstance(obj, nn.Module) and any(
        name in registry for registry in (obj._parameters, obj._buffers, obj._modules)
    )


class Journal:
    """Records reversible edits and undoes them, newest first; use as a context manager to undo
    on leaving the block (also by an exception)."""

    def __init__(self, label: str = "journal") -> None:
        self.label = label
        self._steps: list[_Step] = []

    def __len__(self) -> int:
        return len(self._steps)

    def set_attr(self, obj: object, name: str, value: object) -> None:
        """``obj.name = value``; undone by putting the previous value back, or by deleting the
        attribute when ``obj`` had none of its own (a class attribute then shows through again)."""
        undo = (
            partial(setattr, obj, name, getattr(obj, name))
            if _owns(obj, name)
            else partial(delattr, obj, name)
        )
        setattr(obj, name, value)
        self.record(undo, f"{type(obj).__name__}.{name}")

    def record(self, undo: Callable[[], None], label: str) -> None:
        """Remember ``undo`` for an edit already made that is not an attribute assignment
        (a tensor copied back, a LoRA unmerged, a hook removed); ``label`` names it in errors."""
        self._steps.append(_Step(undo, label))

    def scope(self, label: str) -> Journal:
        """A nested journal whose undo also runs, in its place, when this one is undone."""
        child = Journal(label)
        self.record(child.undo, label)
        return child

    def undo(self) -> None:
        """Undo every recorded edit, newest first. A failing step is logged and the others still
        run; the first failure is raised at the end. A second call does nothing."""
        first: BaseException | None = None
        while self._steps:
            step = self._steps.pop()
            try:
                step.undo()
            except BaseException as error:  # an interrupt as well: the other steps must still run
                logger.error("%s: undoing %s failed: %r", self.label, step.label, error)
                first = first or error
        if first is not None:
            raise first

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.undo()
