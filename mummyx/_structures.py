"""Headers and QueryParams: the read-only multi-mappings a Request hands out (built lazily)."""
from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar, Union, overload
from urllib.parse import parse_qsl

_T = TypeVar("_T")


class Headers(Mapping[str, str]):
    """Request headers: case-insensitive, order-keeping, repeated names kept.

    ``headers[name]`` and ``get`` give the first value; ``getall`` gives every value in order;
    ``items()`` yields every (name, value) pair as received (names keep their original case).
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: List[Tuple[str, str]]) -> None:
        self._items = items
        index: Dict[str, List[str]] = {}
        for name, value in items:
            index.setdefault(name.lower(), []).append(value)
        self._index = index

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()][0]

    @overload
    def get(self, name: str) -> Optional[str]: ...
    @overload
    def get(self, name: str, default: Union[str, _T]) -> Union[str, _T]: ...
    def get(self, name, default=None):  # type: ignore[no-untyped-def]
        values = self._index.get(name.lower())
        return values[0] if values else default

    def getall(self, name: str, default: Optional[List[str]] = None) -> List[str]:
        values = self._index.get(name.lower())
        if values is None:
            return [] if default is None else default
        return list(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for name, _ in self._items:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> List[Tuple[str, str]]:  # type: ignore[override]
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class QueryParams(Mapping[str, str]):
    """Query-string parameters: ``params[name]`` is the first value, ``getall`` all of them.

    ``+`` decodes to a space and percent-escapes are decoded; blank values are kept.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, query: Union[str, List[Tuple[str, str]]] = "") -> None:
        items = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
        self._items = items
        index: Dict[str, List[str]] = {}
        for name, value in items:
            index.setdefault(name, []).append(value)
        self._index = index

    def __getitem__(self, name: str) -> str:
        return self._index[name][0]

    def getall(self, name: str, default: Optional[List[str]] = None) -> List[str]:
        values = self._index.get(name)
        if values is None:
            return [] if default is None else default
        return list(values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> List[Tuple[str, str]]:  # type: ignore[override]
        return list(self._items)

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"
