"""Key-value state of one partition's processor, with the changes since the last commit.

The engine writes the changes to the compacted changelog topic in the same Kafka
transaction as the outputs and the input offsets, and rebuilds the state from the
changelog when a partition is assigned: state and outputs never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator


class ChangelogState:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self._dirty: set[str] = set()

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        self.data[key] = value
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            self._dirty.add(key)

    def restore(self, key: str, value: str | None) -> None:
        """Apply a changelog record (None is a tombstone) without marking it dirty."""
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def changes(self) -> list[tuple[str, str | None]]:
        """Keys changed since the last call, with their current value (None: deleted)."""
        out = [(k, self.data.get(k)) for k in sorted(self._dirty)]
        self._dirty.clear()
        return out

    def items(self, prefix: str) -> Iterator[tuple[str, str]]:
        return ((k, v) for k, v in self.data.items() if k.startswith(prefix))
