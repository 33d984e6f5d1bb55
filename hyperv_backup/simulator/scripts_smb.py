"""Staging shares: ``new-staging-share`` / ``remove-staging-share`` as ``New-SmbShare`` and
``Remove-SmbShare -Force`` would do them.

When the simulator runs Samba the share is served for real (readable with
:class:`~hyperv_backup.transfer.smb.SMBReader`, for the account granted read access only),
and removing it disconnects its readers. Events: ``share_created``, ``share_removed``.

A share's path is a folder of the host, or a shadow copy's device with a trailing backslash
(``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopyN\\``, the ``device_object`` of
``new-paused-shadow``): that share serves the shadow's frozen files in the volume's own
layout, as Windows serves a share on a shadow device. Any other path that starts with
``\\`` or ``/`` is refused.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from hyperv_backup.ps_scripts import (
    NewStagingShareParams,
    RemovalResult,
    RemoveStagingShareParams,
    StagingShare,
    is_shadow_device_path,
)
from hyperv_backup.simulator.hoststate import Call, HostState, ScriptFailedError
from hyperv_backup.simulator.shares import ShareRecord, ShareServer

__all__ = ["new_staging_share", "remove_staging_share"]

_PREFIX = "hyperv-backup-"
# A Samba user no one can log in as: the share of an account the simulator does not know.
_NO_ONE = "nobody"


def new_staging_share(call: Call, params: NewStagingShareParams) -> StagingShare:
    """Share an existing folder, or a shadow copy's device, read-only to ``ReadAccess``; the
    same share again is a no-op."""
    host = call.host
    if is_shadow_device_path(params.path):
        path = params.path  # the trailing backslash: the shadow volume's root
        local = _shadow_copy(host, params)
    elif params.path.startswith(("\\", "/")):
        # The contract refuses these before they are sent; the script refuses them too.
        raise ScriptFailedError(
            "export",
            f"Refusing to share '{params.path}' as '{params.name}': a staging share's path is "
            f"a folder on a drive of host {host.scenario.host.computer_name}, or a shadow "
            "copy's device. Nothing was shared.",
            params.path,
        )
    else:
        path = params.path.rstrip("\\/")
        local = host.local(path)
        if not local.is_dir():
            raise ScriptFailedError(
                "export",
                f"Cannot share '{params.path}' as '{params.name}': no such folder on host "
                f"{host.scenario.host.computer_name}.",
                params.path,
            )
    with host.lock:
        existing = host.smb_shares.get(params.name.casefold())
        if existing is not None:
            if existing.path.rstrip("\\").casefold() != path.rstrip("\\").casefold():
                raise ScriptFailedError(
                    "export",
                    f"A share named '{params.name}' already exists on host "
                    f"{host.scenario.host.computer_name} for '{existing.path}', not for "
                    f"'{path}'. Remove it (remove-staging-share) or choose another name.",
                    params.name,
                )
            return _result(host, existing, created=False)
        record = ShareRecord(name=params.name, path=path, read_access=params.read_access)
        server = host.share_server
        if server is not None:
            server.add_share(record.name, local, valid_users=[_login(server, record.read_access)])
        host.smb_shares[record.name.casefold()] = record
    host.emit(call.script, None, "share_created", name=record.name, path=path)
    return _result(host, record, created=True)


def remove_staging_share(call: Call, params: RemoveStagingShareParams) -> RemovalResult:
    """Remove a ``hyperv-backup-*`` share (readers are cut off); removed=False if absent."""
    host = call.host
    if not params.name.casefold().startswith(_PREFIX):
        raise ScriptFailedError(
            "unexpected",
            f"Refusing to remove share '{params.name}': only staging shares ({_PREFIX}*) are "
            "removed. Nothing was removed.",
            params.name,
        )
    started = time.monotonic()
    with host.lock:
        record = host.smb_shares.pop(params.name.casefold(), None)
        if record is None:
            return RemovalResult(removed=False)
        if host.share_server is not None:
            host.share_server.remove_share(record.name)
    host.emit(call.script, None, "share_removed", name=record.name, path=record.path)
    return RemovalResult(removed=True, seconds=round(time.monotonic() - started, 3))


def _shadow_copy(host: HostState, params: NewStagingShareParams) -> Path:
    """The frozen files of the shadow copy whose device ``params.path`` is."""
    device = params.path.rstrip("\\").casefold()
    with host.lock:
        shadow = next(
            (s for s in host.shadows.values() if s.device_object.casefold() == device), None
        )
    if shadow is None:
        raise ScriptFailedError(
            "shadow",
            f"Cannot share '{params.path}' as '{params.name}': no shadow copy has that device "
            f"on host {host.scenario.host.computer_name}.",
            params.path,
        )
    return shadow.copy


def _result(host: HostState, record: ShareRecord, *, created: bool) -> StagingShare:
    unc = f"\\\\{host.scenario.host.computer_name}\\{record.name}"
    return StagingShare(name=record.name, path=record.path, unc_path=unc, created=created)


def _login(server: ShareServer, account: str) -> str:
    """The Samba user for Windows account ``account`` (``DOMAIN\\user``, ``user@domain``)."""
    user = re.split(r"[\\@]", account)[1 if "\\" in account else 0].casefold()
    known = {server.username.casefold(), *(a.casefold() for a in server.aliases)}
    return server.username if user in known else _NO_ONE
