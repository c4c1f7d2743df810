"""A small named registry: the one extension mechanism (methods, backends, sources, models).

Duplicate names are rejected (no silent overwrite); unknown names raise a ConfigError that lists
the known names and suggests the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from rftctl.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T | None = None, *, summary: str = ""):
        """Register ``obj`` under ``name``; without ``obj`` works as a decorator."""

        def _add(o: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            text = summary or (
                getattr(o, "summary", "") or (o.__doc__ or "").strip().split("\n")[0]
            )
            self._entries[name] = Entry(name, o, text)
            return o

        if obj is not None:
            return _add(obj)
        return _add

    def get(self, name: str, *, key: str | None = None) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            raise ConfigError(self.unknown_message(name, key=key)) from None

    def unknown_message(self, name: str, *, key: str | None = None) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" did you mean {close[0]!r}?" if close else ""
        where = f"{key}: " if key else ""
        return f"{where}unknown {self.kind} {name!r};{hint} known: {', '.join(known)}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
