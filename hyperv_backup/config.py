"""Validated settings: how to reach a Hyper-V host and how long to wait for it.

Everything here is a frozen pydantic model: build it once at the edge (a config file, the CLI,
a script) and pass it inward. Secrets are :class:`pydantic.SecretStr`, so they print as
``'**********'`` in reprs, logs and error messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["AuthMethod", "ConnectionSettings", "Timeouts"]

AuthMethod = Literal["negotiate", "ntlm", "kerberos", "basic", "credssp", "certificate"]
"""Authentication protocols pypsrp offers. ``negotiate`` picks Kerberos, else NTLM."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Timeouts(_Frozen):
    """All the waiting the remote layer does, in seconds, in one place.

    - ``connect``: establishing the TCP/TLS connection.
    - ``operation``: the WS-Management OperationTimeout; the host answers a long poll at the
      latest after this long (with "no data yet"), so it bounds how stale a poll can be.
    - ``read``: how long the HTTP client waits for any response. It must exceed
      ``operation``, otherwise every idle long poll would look like a dead connection;
      when left out it defaults to ``operation + 10``.
    - ``script``: the deadline for one script, enforced by hyperv-backup itself (pypsrp's
      operation timeout is not a command timeout). When it passes, the script is stopped on
      the host and :class:`~hyperv_backup.errors.ScriptTimeoutError` is raised. Scripts
      that legitimately run for hours (exports, merges) declare their own longer default.
    - ``per_script``: deadlines by script name, overriding both of the above.
    """

    connect: float = Field(default=30.0, gt=0)
    operation: int = Field(default=20, ge=1, le=3600)
    read: float | None = Field(default=None, gt=0)
    script: float = Field(default=600.0, gt=0)
    per_script: dict[str, float] = Field(default_factory=dict)

    def deadline_for(self, script: str, declared: float | None = None) -> float:
        """The deadline of ``script``: ``per_script``, else its declared one, else ``script``."""
        return self.per_script.get(script) or declared or self.script

    @model_validator(mode="after")
    def _read_exceeds_operation(self) -> Timeouts:
        if self.read is None:
            object.__setattr__(self, "read", float(self.operation + 10))
        elif self.read <= self.operation:
            raise ValueError(
                f"timeouts.read ({self.read}s) must be greater than timeouts.operation "
                f"({self.operation}s): the host may legitimately stay silent for the whole "
                "operation timeout. Raise read or lower operation."
            )
        return self

    @property
    def read_seconds(self) -> float:
        """``read`` after defaulting (never None once validated)."""
        assert self.read is not None
        return self.read


class ConnectionSettings(_Frozen):
    """How to reach one Hyper-V host over WinRM / PowerShell Remoting.

    HTTPS with certificate validation is the default. To trust a private CA, give
    ``ca_bundle``; turning validation off needs ``cert_validation=False`` and is logged as a
    warning on every connect.
    """

    host: str = Field(min_length=1, description="Host name or IP address of the Hyper-V host.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 5986 with TLS, 5985 without."
    )
    use_tls: bool = True
    auth: AuthMethod = "negotiate"
    username: str | None = None
    password: SecretStr | None = None
    cert_validation: bool = True
    ca_bundle: Path | None = Field(
        default=None, description="PEM file with the CA(s) that signed the host's certificate."
    )
    certificate_pem: Path | None = Field(
        default=None, description="Client cert (auth=certificate)."
    )
    certificate_key_pem: Path | None = Field(default=None, description="Its private key.")
    encryption: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="WinRM message encryption; 'auto' encrypts plain HTTP with NTLM/Kerberos.",
    )
    negotiate_send_cbt: bool = Field(
        default=True, description="Send TLS channel binding with negotiate/ntlm/kerberos."
    )
    path: str = "wsman"
    proxy: str | None = Field(
        default=None, description="HTTP proxy URL; by default none, and the environment is ignored."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @model_validator(mode="after")
    def _coherent(self) -> ConnectionSettings:
        if self.auth == "certificate":
            if not self.use_tls:
                raise ValueError("auth='certificate' needs TLS (use_tls=True).")
            if self.certificate_pem is None or self.certificate_key_pem is None:
                raise ValueError(
                    "auth='certificate' needs certificate_pem and certificate_key_pem."
                )
        elif self.auth != "kerberos" and (not self.username or self.password is None):
            raise ValueError(
                f"auth={self.auth!r} needs a username and a password "
                "(only kerberos can use an existing ticket instead)."
            )
        if self.auth == "basic" and not self.use_tls and self.encryption != "never":
            raise ValueError(
                "Basic authentication over plain HTTP would send the password readable on the "
                "wire. Use TLS (use_tls=True, port 5986), or another auth method, or accept "
                "the risk explicitly with encryption='never'."
            )
        if self.ca_bundle is not None and not self.cert_validation:
            raise ValueError("ca_bundle is given but cert_validation is False; choose one.")
        return self

    @property
    def effective_port(self) -> int:
        """The port to connect to, after applying the WinRM defaults."""
        if self.port is not None:
            return self.port
        return 5986 if self.use_tls else 5985

    @property
    def endpoint(self) -> str:
        """The WinRM URL, for messages and logs (holds no credentials)."""
        scheme = "https" if self.use_tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.effective_port}/{self.path}"
