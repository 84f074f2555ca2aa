"""Listing many users' trees, each as its owner, with scanners
(treewalk.py) started by the spawner: the daemon's side.

A scanner lists its trees one after another and frames each listing (see
treewalk.py). One slow tree must not slow the others: when a listing has
said nothing for HEDGE_AFTER_S, a new scanner takes over the trees after
it, while the old one gets until the idle timeout to finish the slow
tree; then it is killed and that tree counts as stalled. A user can make
their own listing slow (a FUSE mount that never answers, say); they cost
everyone else at most HEDGE_AFTER_S.
"""
from __future__ import annotations

import asyncio
import json
import os

from . import userproc
from .identity import UserIdentity

#: seconds without a tree's listing after which the trees after it go to a new scanner
HEDGE_AFTER_S = 2.0
#: a scanner's request carries at most this much JSON of trees
MAX_REQUEST_BYTES = 64 * 1024


class ScanStalled(Exception):
    """A tree's listing said nothing for the idle timeout."""


class ScannerFailed(Exception):
    """The scanner ended without listing a tree."""


Result = tuple[bytes, bytes] | Exception


async def scan_trees(trees: list[tuple[UserIdentity, str]], idle_timeout_s: float) -> list[Result]:
    """(records, complaints) for each tree, in order; ScanStalled or
    ScannerFailed for a tree that could not be listed."""
    results: list[Result] = []
    for batch in _batches(trees):
        listed: list[Result | None] = [None] * len(batch)
        await _scan_from(batch, 0, listed, idle_timeout_s)
        results += [r if r is not None else ScannerFailed("not listed") for r in listed]
    return results


def _batches(trees: list[tuple[UserIdentity, str]]) -> list[list[tuple[UserIdentity, str]]]:
    """The trees in runs whose request fits in one message to the spawner
    (a datagram is bounded by the socket's buffer, ~200 KB): thousands of
    users, or users in hundreds of groups, take several scanners in turn."""
    batches: list[list[tuple[UserIdentity, str]]] = [[]]
    size = 0
    for identity, path in trees:
        cost = len(json.dumps(userproc.scan_entry(identity, path))) + 2  # as sent, escapes included
        if batches[-1] and size + cost > MAX_REQUEST_BYTES:
            batches.append([])
            size = 0
        batches[-1].append((identity, path))
        size += cost
    return [b for b in batches if b]


async def _scan_from(trees: list[tuple[UserIdentity, str]], first: int, results: list[Result | None],
                     idle_timeout_s: float) -> None:
    if first >= len(trees):
        return
    loop = asyncio.get_running_loop()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    try:
        started = userproc.spawner().start_scanner(trees[first:], out_w)
    except BaseException:
        os.close(out_r)
        raise
    finally:
        os.close(out_w)
    transports: list[asyncio.BaseTransport] = []
    takeover: asyncio.Task[None] | None = None
    child: userproc.Child | None = None
    try:
        frames = await userproc.pipe_reader(loop, out_r, transports)
        child = await asyncio.wait_for(asyncio.wrap_future(started), idle_timeout_s)
        for index in range(first, len(trees)):
            read = asyncio.ensure_future(_frame(frames))
            done, _ = await asyncio.wait({read}, timeout=HEDGE_AFTER_S)
            if not done and takeover is None:  # slow: the rest goes to a new scanner meanwhile
                takeover = asyncio.create_task(_scan_from(trees, index + 1, results, idle_timeout_s))
            try:
                frame = await asyncio.wait_for(read, idle_timeout_s - (HEDGE_AFTER_S if not done else 0))
            except asyncio.TimeoutError:
                results[index] = ScanStalled(f"no answer within {idle_timeout_s:g} s")
                break
            if frame is None:
                results[index] = ScannerFailed("the scanner ended early")
                if takeover is None:
                    takeover = asyncio.create_task(_scan_from(trees, index + 1, results, idle_timeout_s))
                break
            results[index] = frame
            if takeover is not None:
                break  # the rest is the new scanner's
        if takeover is not None:
            await takeover
    finally:
        if child is not None:
            child.kill()
        else:
            started.add_done_callback(lambda f: f.exception() is None and f.result().kill())
        if takeover is not None and not takeover.done():
            takeover.cancel()
        for transport in transports:
            transport.close()


async def _frame(frames: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One tree's (records, complaints); None at the scanner's end."""
    try:
        header = await frames.readuntil(b"\n")
        _, records_len, complaints_len = (int(x) for x in header.split())
        body = await frames.readexactly(records_len + complaints_len)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return None
    return body[:records_len], body[records_len:]
