"""Human-readable output: tables, single objects, live progress."""
from __future__ import annotations

import time
from typing import Any, TextIO


def terminal_safe(text: str) -> str:
    """Text for a terminal: control characters other than newline and tab
    (C0, DEL, C1: escape sequences that could clear the screen, retitle
    the window or fake output) shown as \\xNN. Names and error messages
    come from users' files and from the server."""
    return "".join(c if c in "\n\t" or not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) else f"\\x{ord(c):02x}"
                   for c in text)


def size(n: int | float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def status(s: dict[str, Any]) -> str:
    lines = [
        f"anemoned {s['version']} (rclone {s['rclone_version']}), up {duration(s['uptime_s'])}",
        f"destinations: {s['destinations']}",
        f"jobs: {s['jobs_running']} running, {s['jobs_queued']} queued",
        f"next run: {s['next_run'] + ' (' + s['next_run_destination'] + ')' if s.get('next_run') else 'none scheduled'}",
    ]
    for warning in s.get("warnings") or []:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def key(k: dict[str, Any]) -> str:
    return f"{k['public_key']}\nfingerprint: {k['fingerprint']}\n" \
           f"Add the line above to ~/.ssh/authorized_keys of the backup user on each SFTP server " \
           f"(ProFTPD wants it as `anemonectl key show --format rfc4716`)."


def key_rfc4716(k: dict[str, Any]) -> str:
    """Only the key block, so that `key show --format rfc4716 > FILE` is the file."""
    return k["public_key_rfc4716"].rstrip("\n")


def schedule(s: dict[str, Any] | None) -> str:
    if not s or s.get("kind") == "off":
        return "off"
    kind = s.get("kind")
    # .get: a schedule damaged in the database is still shown (the
    # daemon's warnings say why it does not run).
    if kind == "interval":
        text = f"every {s.get('every')}"
    elif kind == "daily":
        text = f"daily {s.get('time')}"
    elif kind in ("weekly", "monthly"):
        text = f"{kind} {s.get('day')} {s.get('time')}"
    elif kind == "cron":
        text = f"cron {s.get('expr')}"
    else:
        text = f"{kind!r} (not a schedule)"
    return text if s.get("catch_up", True) else text + " (missed runs skipped)"


def last_sync(ls: dict[str, Any] | None) -> str:
    if not ls:
        return "never"
    text = f"{ls['status']} at {ls['at']} (job {ls['job']}): {ls['files_transferred']} files, {size(ls['bytes_transferred'])}"
    if ls.get("error"):
        text += f"; {ls['error']}"
    return text


def link(d: dict[str, Any]) -> str:
    """Parallelism and bandwidth schedule, as the daemon uses them."""
    runs = d.get("processes")
    runs = "4 (LAN) or 16 (link)" if runs == 0 else runs  # link_options.processes_for
    text = (f"{runs} rclone processes, each {d.get('transfers')} transfers, {d.get('checkers')} "
            f"checkers, at most {d.get('connections')} SSH connections; bandwidth {d.get('bwlimit') or 'off'}")
    return text + (f" (refused: {d['link_error']})" if d.get("link_error") else "")


def destination(d: dict[str, Any]) -> str:
    auth = f"key {d['key_file']}" if d["auth"] == "key" else "password"
    lines = [
        f"{d['name']}  ({'enabled' if d['enabled'] else 'disabled'})",
        f"  server:      {d['user']}@{d['host']}:{d['port']} ({auth})",
        f"  remote path: {d['remote_path']}",
        f"  host key:    {d['host_key_fingerprint'] or 'not pinned'}",
        f"  schedule:    {schedule(d.get('schedule'))}",
        f"  safety:      at most {d['max_delete']} deletions ({d['max_delete_percent']}% of remote files) per sync; "
        + (f"versions kept {d['keep_versions_days']} days" if d["keep_versions_days"] else "no versions kept"),
        f"  per user:    stopped after {d.get('stall_timeout', 300)} s without progress; full sync every "
        + (f"{d['full_sync_every']} days" if d.get("full_sync_every") else "sync"),
        f"  link:        {link(d)}",
        f"  next run:    {d.get('next_run') or '-'}",
        f"  verify:      {schedule(d.get('verify_schedule'))}"
        + (" (by downloading)" if d.get("verify_download") else "")
        + (f", next {d['next_verify']}" if d.get("next_verify") else ""),
        f"  last sync:   {last_sync(d.get('last_sync'))}",
    ]
    if d.get("max_age"):
        lines.append(f"  max age:     {d['max_age']}")
    for n in d.get("notifications") or []:
        lines.append(f"  notify:      {n['id']}: {n['url']} (on {n['policy']})")
    if d.get("ping_url"):
        lines.append(f"  ping URL:    {d['ping_url']}")
    for warning in d.get("warnings") or []:
        lines.append(f"  warning:     {warning}")
    test = d.get("last_test")
    if test:
        outcome = "successful" if test["ok"] else f"failed: {test['class']}"
        lines.append(f"  last test:   {outcome} at {test['at']}")
    return "\n".join(lines)


def destination_table(ds: list[dict[str, Any]]) -> str:
    if not ds:
        return "No destinations. Add one with: anemonectl dest add NAME --host HOST --user USER --remote-path PATH"
    rows = [[d["name"], "yes" if d["enabled"] else "no", f"{d['user']}@{d['host']}:{d['port']}", d["remote_path"],
             schedule(d.get("schedule")), d.get("next_run"), (d.get("last_sync") or {}).get("status", "never")] for d in ds]
    return table(["NAME", "ENABLED", "SERVER", "REMOTE PATH", "SCHEDULE", "NEXT RUN", "LAST SYNC"], rows)


def test_result(r: dict[str, Any]) -> str:
    if r["ok"]:
        return "Connection successful"
    lines = [f"{r['class']}: {r['message']}"]
    lines += [f"  - {h}" for h in r.get("hints", [])]
    return "\n".join(lines)


def job(j: dict[str, Any]) -> str:
    lines = [f"job {j['id']}: {j['kind']} {'to' if j['kind'] == 'restore' else 'of'} {j['destination']}{' (dry run)' if j.get('dry_run') else ''}: {j['state']}"]
    lines.append(f"  queued {j['queued_at']}, started {j['started_at'] or '-'}, finished {j['finished_at'] or '-'}")
    if j.get("error"):
        lines.append(f"  error: {j['error']}")
    st = j.get("stats")
    if st and j["kind"] == "verify":
        if "checks" in st:  # a verify that compared something
            lines.append(f"  {st['checks']} files compared ({st.get('method')}): {st.get('differ', 0)} differ, "
                         f"{st.get('missing', 0)} missing on the server, {st.get('extra', 0)} extra on the server")
        for name, u in sorted((st.get("users") or {}).items()):
            if u.get("error") or u.get("warning"):
                lines.append(f"  {name}: {u['status']}: {u.get('error') or u.get('warning')}")
            for label, key in (("differs", "differing_files"), ("missing", "missing_files")):
                for f in u.get(key, []):
                    lines.append(f"  {label}: {f}")
    elif st and "files_transferred" in st:
        lines.append(f"  {st['files_transferred']} files ({size(st['bytes_transferred'])}) transferred, "
                     f"{st['files_deleted']} deleted, {st['checks']} checked, {st['errors']} errors, "
                     f"{duration(st.get('duration_s'))}")
        users = st.get("users") or {}
        if users:
            rows = [[u, v["status"], v["files_transferred"], size(v["bytes_transferred"]), v["files_deleted"],
                     (v.get("warning") or v.get("error") or "")[:100]] for u, v in sorted(users.items())]
            lines.append(_indent(table(["USER", "STATUS", "FILES", "BYTES", "DELETED", "WARNING / ERROR"], rows)))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def job_table(js: list[dict[str, Any]]) -> str:
    if not js:
        return "No jobs."
    rows = [[j["id"], j["destination"], j["kind"] + (" (dry)" if j.get("dry_run") else ""), j["state"], j["queued_at"],
             duration((j.get("stats") or {}).get("duration_s")), (j.get("error") or "")[:60]] for j in js]
    return table(["ID", "DESTINATION", "KIND", "STATE", "QUEUED", "TOOK", "ERROR"], rows)


def progress_line(j: dict[str, Any]) -> str:
    p = j.get("progress")
    if j["state"] == "queued" or not p:
        return f"job {j['id']}: {j['state']}"
    total = p.get("total_bytes") or 0
    pct = f"{100 * p['bytes'] / total:3.0f}% " if total else ""
    eta = f", ETA {duration(p['eta_s'])}" if p.get("eta_s") is not None else ""
    user = f", user {p['current_user']}" if p.get("current_user") else ""
    return (f"{pct}{size(p['bytes'])}"
            f"{' / ' + size(total) if total else ''}, {p['files']} files"
            f"{' / ' + str(p['total_files']) if p.get('total_files') else ''}, {size(p['speed'])}/s{eta}{user}")


class ProgressPrinter:
    """Redraws one line in place on a terminal; elsewhere prints a plain
    line every PLAIN_EVERY_S so logs stay readable."""

    PLAIN_EVERY_S = 10.0

    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.tty = out.isatty()
        self.last_plain = 0.0
        self.width = 0

    def show(self, j: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = progress_line(j)
        if self.tty:
            pad = max(self.width - len(line), 0)
            self.out.write("\r" + line + " " * pad)
            self.width = len(line)
            self.out.flush()
        elif time.monotonic() - self.last_plain >= self.PLAIN_EVERY_S:
            self.last_plain = time.monotonic()
            self.out.write(line + "\n")
            self.out.flush()

    def finish(self) -> None:
        if self.enabled and self.tty and self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()


def restore_listing(r: dict[str, Any]) -> str:
    rows = [[e["path"] + ("/" if e["is_dir"] else ""), "-" if e["is_dir"] else size(e["size"]), e["modified"]]
            for e in r["entries"]]
    text = f"{r['source']}:\n" + (table(["PATH", "SIZE", "MODIFIED"], rows) if rows else "(empty)")
    return text + ("\n(truncated)" if r.get("truncated") else "")


def usage(j: dict[str, Any]) -> str:
    if j["state"] != "succeeded":
        return job(j)
    u = j["stats"]
    rows = [[name, v["files"], size(v["bytes"])] for name, v in sorted(u["users"].items())]
    lines = [table(["USER", "FILES", "BYTES"], rows) if rows else "No user backups on the server yet.",
             f"backup/:   {u['backup_files']} files, {size(u['backup_bytes'])}",
             f"versions/: {u['versions_files']} files, {size(u['versions_bytes'])}"]
    if u.get("free_bytes") is not None:
        lines.append(f"free:      {size(u['free_bytes'])} of {size(u['total_bytes'])} available to the login user")
    else:
        lines.append("free:      the server does not report it")
    if u.get("warning"):
        lines.append(f"warning: {u['warning']}")
    return "\n".join(lines)


def versions(vs: list[str]) -> str:
    return "\n".join(vs) if vs else "No versions kept."


def notification_table(ts: list[dict[str, Any]]) -> str:
    if not ts:
        return "No notification targets. Add one with: anemonectl dest notify add NAME (the URL on standard input)"
    return table(["ID", "ON", "URL"], [[t["id"], t["policy"], t["url"]] for t in ts])


def notify_test(r: dict[str, Any]) -> str:
    return "\n".join(f"{t['id']}: {t['url']}: {'sent' if t['ok'] else 'FAILED (see the daemon log)'}"
                     for t in r["results"])
