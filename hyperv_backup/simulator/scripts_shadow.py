"""Pause + host VSS: pause the VM, shadow-copy its volumes, resume it; and the cleanup.

A shadow copy here is a frozen copy of the VM's files on that volume, taken while the VM is
paused, kept under ``<host_root>/.shadows/<id>/`` in the volume's own layout, and exposed by a
real symbolic link ``<LinkRoot>\\<letter>`` — so ``<LinkRoot>\\D\\Hyper-V\\web01\\x.vhdx``
reads the file as it was, on the host (Samba does not follow the link, as a Windows SMB client
cannot; a share on the shadow's ``device_object``, see :mod:`.scripts_smb`, serves the same
files over SMB). As in the script, everything that can be checked is checked before the
pause, the VM is resumed in a ``finally`` (an injected fault strikes while it is paused, to
prove that), and the links are made after the VM runs again.
"""

from __future__ import annotations

import os
import re
import time
import uuid

from hyperv_backup.models import VMState
from hyperv_backup.ps_scripts import (
    NewPausedShadowParams,
    PausedShadow,
    RemovalResult,
    RemoveShadowParams,
    ResumeVMParams,
    ShadowCopy,
    VMStateChange,
)
from hyperv_backup.simulator.hostfs import drive_of, mirror_path, win_join
from hyperv_backup.simulator.hoststate import Call, ScriptFailedError, ShadowRecord
from hyperv_backup.simulator.vmstate import VMRuntime

__all__ = ["new_paused_shadow", "remove_shadow", "resume_vm"]

_VOLUME = re.compile(r"^([A-Za-z])(:\\?)?$")


def new_paused_shadow(call: Call, params: NewPausedShadowParams) -> PausedShadow:
    """Suspend-VM, one shadow copy per volume, Resume-VM in a finally, then the links."""
    host = call.host
    letters = list(dict.fromkeys(_volume_letter(v, params.link_root) for v in params.volumes))
    links = {letter: win_join(params.link_root, letter) for letter in letters}
    with host.lock:
        vm = host.vm(params.vm_name)
        for letter, link_path in links.items():
            if letter not in host.fs.drives:
                raise ScriptFailedError(
                    "shadow",
                    f"Creating a shadow copy of volume {letter}:\\ failed: the volume does not "
                    "exist.",
                    f"{letter}:\\",
                )
            link = host.local(link_path)
            if link.exists() or link.is_symlink():
                raise ScriptFailedError(
                    "shadow",
                    f"'{link_path}' already exists; remove the earlier shadow copy link first.",
                    link_path,
                )
        host.local(params.link_root).mkdir(parents=True, exist_ok=True)
        host.start_operation(vm, "shadow copy", call.cmdlet)
        files = [(f.path, host.fs.size(f.path)) for f in vm.all_files()]
        pause = vm.state == VMState.RUNNING
        if pause:
            vm.state = VMState.PAUSED
            host.emit(call.script, vm.name, "paused")
    paused_at = time.monotonic()
    pause_seconds = 0.0
    shadows: list[ShadowRecord] = []
    try:
        try:
            call.fault_point("paused")
            for letter in letters:
                on_volume = [(p, n) for p, n in files if drive_of(p) == letter]
                shadows.append(_make_shadow(call, vm, letter, on_volume, links[letter]))
        finally:
            with host.lock:
                if pause:
                    pause_seconds = time.monotonic() - paused_at
                    vm.state = VMState.RUNNING
                    host.emit(call.script, vm.name, "resumed", pause_seconds=pause_seconds)
                vm.operation = None
        for shadow in shadows:  # the VM runs again: the rest takes the time it takes
            link = host.local(shadow.link_path)
            os.symlink(shadow.copy, link, target_is_directory=True)
    except BaseException:
        for shadow in shadows:
            host.delete_shadow(call.script, shadow)
        raise
    return PausedShadow(
        shadows=[
            ShadowCopy(
                id=s.id, volume=s.volume, device_object=s.device_object, link_path=s.link_path
            )
            for s in shadows
        ],
        pause_seconds=pause_seconds,
        resumed=pause,
    )


def _volume_letter(volume: str, link_root: str) -> str:
    match = _VOLUME.match(volume.strip())
    if match is None:
        raise ScriptFailedError(
            "shadow",
            f"Volume '{volume}' is not given by drive letter (such as 'D:\\'); the shadow "
            f"copies are exposed under '{link_root}' by drive letter.",
            volume,
        )
    return match.group(1).upper()


def _make_shadow(
    call: Call, vm: VMRuntime, letter: str, files: list[tuple[str, int]], link_path: str
) -> ShadowRecord:
    host = call.host
    shadow_id = uuid.uuid4()
    # The copy holds only this VM's files: all that a backup of it reads from the volume.
    copy = host.fs.root / ".shadows" / str(shadow_id)
    copy.mkdir(parents=True)
    shadow = ShadowRecord(
        id=shadow_id,
        vm=vm.name,
        volume=f"{letter}:\\",
        device_object=host.next_shadow_device(),
        link_path=link_path,
        copy=copy,
    )
    with host.lock:
        host.shadows[shadow_id] = shadow
    try:
        for path, length in files:
            host.fs.copy_to(path, mirror_path(copy, path), length)
            host.check_open()
    except BaseException:
        host.delete_shadow(call.script, shadow)
        raise
    host.emit(call.script, vm.name, "shadow_created", id=str(shadow_id), volume=shadow.volume)
    return shadow


def remove_shadow(call: Call, params: RemoveShadowParams) -> RemovalResult:
    """Delete the link (only ever a link) and the shadow copy; removed=False if both are gone."""
    host = call.host
    started = time.monotonic()
    link = host.local(params.link_path)
    removed = False
    if link.is_symlink():
        link.unlink()  # the link only, never what it points to
        removed = True
    elif link.exists():
        raise ScriptFailedError(
            "shadow",
            f"Refusing to delete '{params.link_path}': it is not a link to a shadow copy but a "
            "real folder or file. Nothing was deleted.",
            params.link_path,
        )
    with host.lock:
        shadow = host.shadows.get(params.shadow_id)
    if shadow is not None:
        host.delete_shadow(call.script, shadow)
        removed = True
    return RemovalResult(removed=removed, seconds=round(time.monotonic() - started, 3))


def resume_vm(call: Call, params: ResumeVMParams) -> VMStateChange:
    """Resume a paused VM (cleanup after a run that died mid-pause); idempotent."""
    host = call.host
    with host.lock:
        vm = host.vm(params.vm_name)
        before = vm.state
        if before == VMState.PAUSED:
            vm.state = VMState.RUNNING
            host.emit(call.script, vm.name, "resumed")
        return VMStateChange(state_before=before.value, state_after=vm.state.value)
