"""Typed script calls: validate parameters, run the shipped .ps1, validate the result.

>>> runner = ScriptRunner(session)                                   # doctest: +SKIP
>>> inventory = runner.run(SCRIPTS["get-inventory"], GetInventoryParams(names=["web*"]))
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hyperv_backup.errors import ConfigError, ProtocolError
from hyperv_backup.ps_scripts import ScriptParams, ScriptSpec
from hyperv_backup.remote.classify import classify_failure
from hyperv_backup.remote.envelope import parse_envelope
from hyperv_backup.remote.session import Session

__all__ = ["ScriptRunner"]

logger = logging.getLogger(__name__)

P = TypeVar("P", bound=ScriptParams)
R = TypeVar("R", bound=BaseModel)


class ScriptRunner:
    """Runs registered scripts over a :class:`Session` with their contracts enforced."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def run(
        self,
        spec: ScriptSpec[P, R],
        params: P | None = None,
        *,
        deadline: float | None = None,
    ) -> R:
        """Run ``spec`` with ``params`` and return its validated result.

        ``deadline`` (seconds) overrides ``Timeouts.deadline_for(spec.name)``.
        Raises :class:`ConfigError` for invalid params, :class:`ProtocolError` for output that
        is not one valid envelope, a :class:`RemoteScriptError` subclass for a reported failure.
        """
        if params is None:
            try:
                params = spec.params()
            except ValidationError as err:
                raise ConfigError(f"{spec.name!r} needs parameters: {err}") from None
        elif not isinstance(params, spec.params):
            raise ConfigError(
                f"{spec.name!r} takes {spec.params.__name__}, not {type(params).__name__}"
            )
        limit = deadline or self.session.settings.timeouts.deadline_for(spec.name, spec.deadline)
        invocation = self.session.invoke(
            spec.text, params.to_powershell(), script_name=spec.name, deadline=limit
        )
        envelope = parse_envelope(spec.name, invocation)
        if not envelope.ok:
            assert envelope.error is not None
            raise classify_failure(spec.name, envelope.error)
        return self._validate_result(spec, envelope.result)

    @staticmethod
    def _validate_result(spec: ScriptSpec[Any, R], result: Any) -> R:
        try:
            return spec.result.model_validate(result)
        except ValidationError as err:
            raise ProtocolError(
                f"The result of {spec.name!r} does not match {spec.result.__name__}: "
                f"{err.error_count()} problem(s), first: {_first_problem(err)}. The host may run "
                "a version of Windows or Hyper-V this release does not know.",
                script=spec.name,
                output=repr(result),
            ) from None


def _first_problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"
