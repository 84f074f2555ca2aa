"""Getting files back, proving the copy, measuring the server: `restore`,
`restore.list`, `dest.versions`, `verify`, `dest.usage`."""
from __future__ import annotations

import asyncio
import os
from typing import Any

from .. import restore
from ..jobtypes import JobKind, Trigger
from ..protocol.methods import DestName, Restore, RestoreList, Verify
from .actions import dest_env
from .context import Context
from .dispatch import handles
from .views import load_destination


@handles("restore")
async def restore_(ctx: Context, p: Restore) -> dict[str, Any]:
    user = restore.check_user(p.user)
    owner = await asyncio.to_thread(restore.restorer_identity, ctx.config.users_dir, user, os.getuid())
    target = (await asyncio.to_thread(restore.check_target, p.to, p.overwrite, owner, ctx.config.users_dir / user,
                                      ctx.config.restore_dir)).path
    path = p.path or ""
    restore.check_subpath(path)
    if p.version is not None:
        restore.check_version(p.version)
    load_destination(ctx, p.destination, "destination")
    options = {"user": user, "to": str(target), "path": path, "version": p.version, "overwrite": p.overwrite}
    job, _ = ctx.jobs.submit(p.destination, JobKind.RESTORE, False, trigger=Trigger.MANUAL, options=options)
    return ctx.jobs.view(job)


@handles("restore.list")
async def restore_list(ctx: Context, p: RestoreList) -> dict[str, Any]:
    user = restore.check_user(p.user)
    parts = restore.check_subpath(p.path or "")
    if p.version is not None:
        restore.check_version(p.version)
    dest = load_destination(ctx, p.destination, "destination")
    return await restore.list_restorable(ctx.rclone_binary, await dest_env(ctx, dest), dest.remote_path,
                                         user, parts, p.version)


@handles("dest.versions")
async def dest_versions(ctx: Context, p: DestName) -> list[str]:
    dest = load_destination(ctx, p.name)
    return await restore.list_versions(ctx.rclone_binary, await dest_env(ctx, dest), dest.remote_path)


@handles("verify")
async def verify_(ctx: Context, p: Verify) -> dict[str, Any]:
    if p.user is not None:
        restore.check_user(p.user)
    load_destination(ctx, p.destination, "destination")
    job, _ = ctx.jobs.submit(p.destination, JobKind.VERIFY, False, trigger=Trigger.MANUAL,
                             options={"user": p.user, "download": p.download})
    return ctx.jobs.view(job)


@handles("dest.usage")
async def dest_usage(ctx: Context, p: DestName) -> dict[str, Any]:
    load_destination(ctx, p.name)
    job, _ = ctx.jobs.submit(p.name, JobKind.USAGE, False, trigger=Trigger.MANUAL)
    return ctx.jobs.view(job)
