"""The link layer's shared rules, without I/O: the link table and keepalive."""

import asyncio

import pytest

from gatewayd.links import Expiry, Keepalive, LinkDescription, LinkState, LinkTable, PingPolicy


def test_lowest_free_id_and_limit() -> None:
    table: LinkTable[str] = LinkTable(range(3))
    table.add(0, "a")
    table.add(2, "c")
    assert table.free_id() == 1
    assert table.free_id(limit=1) is None
    table.add(1, "b")
    assert table.free_id() is None
    with pytest.raises(KeyError):
        table.add(1, "again")


def test_reservation_rolls_back_on_failure_and_cancellation() -> None:
    table: LinkTable[str] = LinkTable(range(3))
    undone = []
    with pytest.raises(OSError), table.reserving(1, "link", undo=undone.append):
        assert table.get(1) == "link"
        raise OSError("refused")
    assert 1 not in table and undone == ["link"]
    with pytest.raises(asyncio.CancelledError), table.reserving(1, "link"):
        raise asyncio.CancelledError
    assert 1 not in table
    with table.reserving(1, "link"):
        pass
    assert table[1] == "link"


def test_tokens_end_with_their_link_or_their_generation() -> None:
    table: LinkTable[str] = LinkTable(range(3))
    first, second = table.token(), table.token()
    first.end()
    assert not first.live and second.live
    table.retire()  # AT+RST
    assert not second.live


def test_description_as_dict() -> None:
    description = LinkDescription(id=1, kind="ws", peer="h:80", state=LinkState.OPEN,
                                  bytes_in=2, bytes_out=3, last_error=None)
    assert description.as_dict() == {"id": 1, "kind": "ws", "peer": "h:80", "state": "open",
                                     "bytes_in": 2, "bytes_out": 3, "last_error": None,
                                     "routed_to": None}


async def _run_keepalive(policy: PingPolicy, *, answer: bool,
                         idle: float = 0) -> tuple[Expiry, int, int]:
    rounds = pings = 0
    expired: list[Expiry] = []

    def current() -> PingPolicy:
        nonlocal rounds
        rounds += 1
        return policy

    async def send_ping() -> None:
        nonlocal pings
        pings += 1
        if answer:
            asyncio.get_running_loop().call_later(0.01, keepalive.pong)

    async def expire(why: Expiry) -> None:
        expired.append(why)

    keepalive = Keepalive(current, send_ping=send_ping, expire=expire, alive=lambda: True,
                          log=None, idle_timeout=lambda: idle)
    await asyncio.wait_for(keepalive.run(), 5)
    return expired[0], rounds, pings


async def test_unanswered_ping_drops_at_its_deadline_without_spinning() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    why, rounds, pings = await _run_keepalive(PingPolicy(0.05, 0.3), answer=False)
    assert why is Expiry.NO_PONG
    assert 0.3 <= loop.time() - start < 1.0
    assert pings == 1  # one unanswered ping, not one per interval
    assert rounds < 10  # a timer, not a busy loop


async def test_idle_timeout_ends_even_an_answering_peer() -> None:
    why, _, pings = await _run_keepalive(PingPolicy(0.05, 0.05, periodic=True), answer=True,
                                         idle=0.3)
    assert why is Expiry.IDLE
    assert pings >= 3
