"""The link table every dialect keeps: ids, status, descriptions, generations.

A dialect's link-id namespace is a :class:`LinkTable`: it reserves ids
(the lowest free one, or one the MCU names), rolls a reservation back when
the open fails or is cancelled, and owns a :class:`Generation` that ends when
the module restarts. Every link holds a :class:`Token` of that generation;
events from the network are handed to the dialect only while the token is
live, so nothing from before an ``AT+RST`` (or from a closed connection)
reaches the MCU.

Each link reports one :class:`LinkState` and describes itself as one
:class:`LinkDescription`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["DescribedLink", "Generation", "LinkDescription", "LinkState", "LinkTable", "Token"]

L = TypeVar("L")


class LinkState(enum.Enum):
    """Where one link is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    WAITING_TO_RECONNECT = "waiting to reconnect"
    #: A close handshake (close frame, FIN) is under way.
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LinkDescription:
    """What ``gatewayd status`` and the metrics show of one link."""

    id: int
    kind: str | None
    peer: str | None
    state: LinkState
    bytes_in: int
    bytes_out: int
    last_error: str | None
    #: Where the route rules sent the link, when not to ``peer``.
    routed_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the control socket (``state`` as its text)."""
        fields = asdict(self)
        fields["state"] = self.state.value
        return fields


class DescribedLink(Protocol):
    """Any link a dialect holds, as ``gatewayd status`` sees it."""

    def describe(self) -> LinkDescription: ...


class Generation:
    """One incarnation of a dialect's link state; it ends at a restart."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current = True

    def end(self) -> None:
        self.current = False

    def token(self) -> Token:
        return Token(self)


class Token:
    """One link's (or one connection's) right to report to the MCU: void once
    ended, or once its generation ended."""

    __slots__ = ("_generation", "_live")

    def __init__(self, generation: Generation | None = None) -> None:
        self._generation = generation
        self._live = True

    @property
    def live(self) -> bool:
        return self._live and (self._generation is None or self._generation.current)

    def end(self) -> None:
        self._live = False


class LinkTable(Generic[L]):
    """The links of one id namespace (``ids``), by id."""

    def __init__(self, ids: range) -> None:
        self.ids = ids
        self.generation = Generation()
        self._links: dict[int, L] = {}

    def free_id(self, limit: int | None = None) -> int | None:
        """The lowest free id (below *limit*, when given), or ``None``."""
        ids = self.ids if limit is None else range(self.ids.start, limit)
        return next((i for i in ids if i not in self._links), None)

    def token(self) -> Token:
        """A token of the table's current generation, for one new link."""
        return self.generation.token()

    def add(self, link_id: int, link: L) -> None:
        if link_id in self._links:
            raise KeyError(f"link id {link_id} is taken")
        self._links[link_id] = link

    @contextmanager
    def reserving(self, link_id: int, link: L,
                  undo: Callable[[L], None] | None = None) -> Iterator[L]:
        """Hold *link_id* for *link* while it opens; free it again (then call
        *undo*) when the block raises: the open failed, or was cancelled."""
        self.add(link_id, link)
        try:
            yield link
        except BaseException:
            self.remove(link_id, link)
            if undo is not None:
                undo(link)
            raise

    def __getitem__(self, link_id: int) -> L:
        return self._links[link_id]

    def get(self, link_id: int) -> L | None:
        return self._links.get(link_id)

    def pop(self, link_id: int) -> L | None:
        return self._links.pop(link_id, None)

    def remove(self, link_id: int, link: L) -> bool:
        """Free *link_id* if *link* still holds it."""
        if self._links.get(link_id) is link:
            del self._links[link_id]
            return True
        return False

    def clear(self) -> list[L]:
        """Free every id; returns the links that held them."""
        links = list(self._links.values())
        self._links.clear()
        return links

    def retire(self) -> None:
        """End the generation: tokens handed out so far stop reporting."""
        self.generation.end()

    def sorted(self) -> list[tuple[int, L]]:
        return sorted(self._links.items(), key=lambda item: item[0])

    def values(self) -> list[L]:
        """The links in the order their ids were taken."""
        return list(self._links.values())

    def __contains__(self, link_id: object) -> bool:
        return link_id in self._links

    def __len__(self) -> int:
        return len(self._links)

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._links))
