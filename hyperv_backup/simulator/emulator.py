"""The emulated Hyper-V host: answers hyperv-backup's scripts from a :class:`Scenario`.

It recognises a script by its ``# hyperv-backup-script: <name>`` marker line, validates the
parameters with the same pydantic model the client used, applies injected faults, and writes
the same JSON envelope the real script would. What it does not know it answers the way
PowerShell would: an unknown command or parameter becomes a terminating error record.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from hyperv_backup.ps_scripts import (
    SCRIPTS,
    GetInventoryParams,
    InventoryResult,
    ScriptParams,
    marker_of,
)
from hyperv_backup.simulator.protocol import (
    DropConnection,
    ErrorRecordSpec,
    ScriptInvocation,
    ScriptOutcome,
)
from hyperv_backup.simulator.scenario import FaultSpec, Scenario

__all__ = ["EmulatedHost", "RecordedCall"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedCall:
    """A script call as the emulated host received it (for tests to inspect)."""

    script: str
    raw_parameters: dict[str, Any]
    params: ScriptParams | None
    username: str
    outcome: str = "ok"


@dataclass
class _FaultState:
    spec: FaultSpec
    fired: int = 0


class _ScriptFailedError(Exception):
    def __init__(self, kind: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.target = target


@dataclass
class EmulatedHost:
    """A :class:`~hyperv_backup.simulator.protocol.ScriptHandler` backed by a scenario."""

    scenario: Scenario
    calls: list[RecordedCall] = field(default_factory=list)
    _faults: list[_FaultState] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._faults = [_FaultState(f) for f in self.scenario.faults]
        self._handlers: dict[str, Callable[[Any], BaseModel]] = {
            "get-host-info": lambda _params: self.scenario.host.info(),
            "get-inventory": self._get_inventory,
        }

    def add_fault(self, fault: FaultSpec) -> None:
        """Inject a fault at run time (tests use this between calls)."""
        with self._lock:
            self._faults.append(_FaultState(fault))

    def calls_to(self, script: str) -> list[RecordedCall]:
        """The recorded calls of one script, oldest first."""
        with self._lock:
            return [c for c in self.calls if c.script == script]

    # --- the handler ---------------------------------------------------------------------

    def __call__(self, invocation: ScriptInvocation) -> ScriptOutcome:
        name = marker_of(invocation.script) if invocation.is_script else None
        spec = SCRIPTS.get(name or "")
        if name is None or spec is None:
            return _unknown_command(invocation, name)
        try:
            params = spec.params.model_validate(
                _bind_case_insensitively(spec.params, invocation.parameters),
                by_alias=True,
                by_name=False,
            )
        except ValidationError as err:
            self._record(name, invocation, None, "invalid parameters")
            return _parameter_binding_error(name, err)
        fault = self._take_fault(name, params)
        self._record(name, invocation, params, fault.spec.action if fault else "ok")
        try:
            if fault is not None:
                self._apply(fault.spec, name)
            result = self._handlers[name](params)
        except _ScriptFailedError as failure:
            return _envelope_error(failure.kind, failure.message, failure.target)
        return ScriptOutcome(output=[_envelope_ok(result)])

    def _record(
        self, name: str, invocation: ScriptInvocation, params: ScriptParams | None, outcome: str
    ) -> None:
        with self._lock:
            self.calls.append(
                RecordedCall(
                    script=name,
                    raw_parameters=dict(invocation.parameters),
                    params=params,
                    username=invocation.username,
                    outcome=outcome,
                )
            )

    def _take_fault(self, name: str, params: ScriptParams) -> _FaultState | None:
        vm_names = set(getattr(params, "names", []) or []) | {getattr(params, "vm_name", None)}
        with self._lock:
            for state in self._faults:
                spec = state.spec
                if spec.script != name or (spec.vm is not None and spec.vm not in vm_names):
                    continue
                if spec.times is not None and state.fired >= spec.times:
                    continue
                state.fired += 1
                return state
        return None

    @staticmethod
    def _apply(fault: FaultSpec, name: str) -> None:
        logger.info("simulator: injecting %s into %s", fault.action, name)
        if fault.seconds:
            time.sleep(fault.seconds)
        if fault.action == "drop_connection":
            raise DropConnection(f"fault injected into {name}")
        if fault.action == "fail":
            raise _ScriptFailedError(fault.kind, fault.message, fault.vm)
        if fault.action == "conflicting_operation":
            vm = fault.vm or "the virtual machine"
            raise _ScriptFailedError(
                "unexpected",
                f"The virtual machine '{vm}' cannot start a backup operation because it is "
                "currently executing a conflicting operation. Try the backup again.",
                fault.vm,
            )

    # --- scripts -------------------------------------------------------------------------

    def _get_inventory(self, params: GetInventoryParams) -> InventoryResult:
        host = self.scenario.host
        vms = self.scenario.vms
        if not params.names:
            return InventoryResult(vms=[vm.info(host) for vm in vms])
        selected: dict[str, Any] = {}
        for pattern in params.names:
            if _has_wildcard(pattern):
                regex = _wildcard_regex(pattern)
                matched = [vm for vm in vms if regex.fullmatch(vm.name)]
            else:
                matched = [vm for vm in vms if vm.name.casefold() == pattern.casefold()]
                if not matched:
                    raise _ScriptFailedError(
                        "vm_not_found",
                        f"No virtual machine named '{pattern}' exists on host "
                        f"{host.computer_name}.",
                        pattern,
                    )
            for vm in matched:
                selected.setdefault(str(vm.vm_id), vm)
        return InventoryResult(vms=[vm.info(host) for vm in selected.values()])


def _bind_case_insensitively(model: type[ScriptParams], raw: dict[str, Any]) -> dict[str, Any]:
    """PowerShell matches parameter names regardless of case; so does the simulator."""
    canonical = {
        (info.alias or name).lower(): info.alias or name
        for name, info in model.model_fields.items()
    }
    return {canonical.get(key.lower(), key): value for key, value in raw.items()}


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


def _envelope_ok(result: BaseModel) -> str:
    return json.dumps({"ok": True, "result": result.model_dump(mode="json")}, separators=(",", ":"))


def _envelope_error(kind: str, message: str, target: str | None) -> ScriptOutcome:
    error = {"kind": kind, "message": message, "fqid": "Simulated," + kind, "target": target}
    return ScriptOutcome(output=[json.dumps({"ok": False, "error": error}, separators=(",", ":"))])


def _unknown_command(invocation: ScriptInvocation, marker: str | None) -> ScriptOutcome:
    first_line = invocation.script.strip().splitlines()[0] if invocation.script.strip() else ""
    what = f"script {marker!r}" if marker else repr(first_line[:80])
    message = (
        f"The term {what} is not recognized by the Hyper-V simulator: it answers only "
        f"hyperv-backup's scripts ({', '.join(sorted(SCRIPTS))}), identified by their "
        "'# hyperv-backup-script: <name>' marker line."
    )
    return ScriptOutcome(
        errors=[ErrorRecordSpec(message=message, fqid="CommandNotFoundException", category=13)],
        failed=True,
    )


def _parameter_binding_error(name: str, err: ValidationError) -> ScriptOutcome:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = f"Cannot bind parameter '{where}' of {name}: {first['msg']}."
    return ScriptOutcome(
        errors=[
            ErrorRecordSpec(message=message, fqid=f"ParameterBindingFailed,{name}", category=5)
        ],
        failed=True,
    )
