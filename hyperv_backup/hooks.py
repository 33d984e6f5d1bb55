"""Before/after commands: PowerShell on the host, or Python callables.

PowerShell hooks run through the ``invoke-hook`` script: the command is the user's own text,
and the VM's name and id reach it only as the variables ``$VMName`` / ``$VMId`` (plus
``$JobId`` and ``$Phase``). Python hooks are called with a :class:`HookContext`.
A hook's failure is returned as an outcome, never raised and never hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hyperv_backup.errors import HyperVBackupError
from hyperv_backup.host import HyperVHost
from hyperv_backup.models import VMInfo
from hyperv_backup.policy import PowerShellHook
from hyperv_backup.ps_scripts import SCRIPTS, InvokeHookParams
from hyperv_backup.results import HookOutcome, VMBackupResult

__all__ = ["HookContext", "run_hooks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HookContext:
    """What a Python hook is told. ``result`` is set for after-VM hooks."""

    job_id: str
    phase: str
    host: str
    vm: VMInfo | None = None
    result: VMBackupResult | None = None


def _label(hook: Any) -> str:
    if isinstance(hook, PowerShellHook):
        return hook.label
    return getattr(hook, "__qualname__", None) or repr(hook)


def run_hooks(host: HyperVHost, hooks: Sequence[Any], context: HookContext) -> list[HookOutcome]:
    """Run ``hooks`` in order; every one runs even if an earlier one failed."""
    outcomes = []
    for hook in hooks:
        label = _label(hook)
        try:
            output: list[str] = []
            if isinstance(hook, PowerShellHook):
                params = InvokeHookParams(
                    command=hook.command,
                    phase=context.phase,  # type: ignore[arg-type]  # one of the four phases
                    job_id=context.job_id,
                    vm_name=context.vm.name if context.vm else None,
                    vm_id=str(context.vm.id) if context.vm else None,
                )
                output = host.runner.run(SCRIPTS["invoke-hook"], params).output
            else:
                hook(context)
        except (HyperVBackupError, Exception) as err:  # a user's hook may raise anything
            logger.error("%s hook %r failed: %s", context.phase, label, err)
            outcomes.append(HookOutcome(phase=context.phase, hook=label, ok=False, error=str(err)))
            continue
        outcomes.append(HookOutcome(phase=context.phase, hook=label, ok=True, output=output))
    return outcomes
