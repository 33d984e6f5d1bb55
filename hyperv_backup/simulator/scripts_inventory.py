"""``get-host-info`` and ``get-inventory``, answered from the host's run-time state."""

from __future__ import annotations

import fnmatch
import re

from hyperv_backup.models import HostInfo
from hyperv_backup.ps_scripts import GetHostInfoParams, GetInventoryParams, InventoryResult
from hyperv_backup.simulator.hoststate import Call, ScriptFailedError
from hyperv_backup.simulator.vmstate import VMRuntime

__all__ = ["get_host_info", "get_inventory"]


def get_host_info(call: Call, params: GetHostInfoParams) -> HostInfo:
    """The host's identity, as the scenario declares it."""
    return call.host.scenario.host.info()


def get_inventory(call: Call, params: GetInventoryParams) -> InventoryResult:
    """The VMs matching exact names or wildcards (all when none), each once, in host order.

    With ``exact`` every name is literal: a VM may be called ``web[1]``.
    """
    host = call.host
    with host.lock:
        vms = host.vms
        if not params.names:
            selected = list(vms)
        else:
            picked: dict[int, VMRuntime] = {}
            for pattern in params.names:
                if not params.exact and _has_wildcard(pattern):
                    regex = _wildcard_regex(pattern)
                    matched = [vm for vm in vms if regex.fullmatch(vm.name)]
                else:
                    matched = [vm for vm in vms if vm.name.casefold() == pattern.casefold()]
                    if not matched:
                        raise ScriptFailedError.vm_not_found(
                            pattern, host.scenario.host.computer_name
                        )
                for vm in matched:
                    picked.setdefault(id(vm), vm)
            selected = list(picked.values())
        infos = [vm.info(host.scenario.host, host.fs) for vm in selected]
        for vm in selected:
            # Resynchronisation progresses while the client waits: every look at a busy VM
            # (like every refused backup attempt) brings it one step closer to done.
            if vm.reported_replication_state == "Resynchronizing":
                vm.transient_attempts -= 1
        return InventoryResult(vms=infos)


def _has_wildcard(pattern: str) -> bool:
    # WildcardPattern.ContainsWildcardCharacters: *, ?, [ unless escaped with a backtick.
    return re.search(r"(?<!`)[*?\[]", pattern) is not None


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    """PowerShell's -like: *, ?, [set], backtick escapes, case-insensitive."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "`" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch in "*?[":
            end = pattern.find("]", i) if ch == "[" else i
            if ch == "[" and end > i:
                out.append(fnmatch.translate(pattern[i : end + 1])[4:-3])
                i = end + 1
                continue
            out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)
