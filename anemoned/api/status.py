"""`status`, `key.generate`, `key.show`."""
from __future__ import annotations

import asyncio
import logging

from .. import keys
from ..errors import Conflict, NotFound
from ..logs import event
from ..protocol.methods import KeyGenerate, KeyGenerated, KeyShown, NoParams, StatusResult
from . import views
from .context import Context
from .dispatch import handles

_KEY_LOCK = asyncio.Lock()  # two --force at once would shuffle the .old pair


@handles("status")
async def status(ctx: Context, p: NoParams) -> StatusResult:
    return views.status(ctx)


@handles("key.generate")
async def key_generate(ctx: Context, p: KeyGenerate) -> KeyGenerated:
    certs = ctx.config.certs_dir
    try:
        async with _KEY_LOCK:
            key = await asyncio.to_thread(keys.generate_key, certs, p.force)
    except FileExistsError:
        raise Conflict(f"a key already exists at {certs / keys.KEY_NAME}; use --force to replace it "
                       "(the old pair is kept as rclone_key.old)") from None
    event(logging.INFO, "ssh key generated", fingerprint=key.fingerprint, replaced=p.force or None)
    return KeyGenerated(public_key=key.line, fingerprint=key.fingerprint, path=str(certs / keys.KEY_NAME))


@handles("key.show")
async def key_show(ctx: Context, p: NoParams) -> KeyShown:
    certs = ctx.config.certs_dir
    try:
        key = await asyncio.to_thread(keys.show_key, certs)
    except FileNotFoundError:
        raise NotFound("there is no SSH key yet; create one with: anemonectl key generate", field="key") from None
    return KeyShown(public_key=key.line, public_key_rfc4716=keys.rfc4716(key.line), fingerprint=key.fingerprint,
                    path=str(certs / keys.KEY_NAME))
