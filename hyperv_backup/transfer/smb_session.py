"""What the SMB reader and the SMB writer share: the host-path → share mapping and the session.

A host path becomes a UNC path on the host. By default through its administrative shares
(``D:\\VMs\\x.vhdx`` → ``\\\\hv01\\D$\\VMs\\x.vhdx``), which need an account in the host's
local Administrators group (and, for a local account, remote UAC turned off). Where those are
not allowed, ``shares`` maps host folders to shares of your own (``{"D:\\Hyper-V": "HyperV"}``
→ ``\\\\hv01\\HyperV\\...``): the longest matching prefix wins, case-insensitively.

One session per server is set up once and shared by every thread; errors come out typed and
say what to check, and the password never appears in them.
"""

from __future__ import annotations

import logging
import ntpath
import re
import socket
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

import smbclient
from pydantic import SecretStr
from smbprotocol.exceptions import (
    SMBAuthenticationError,
    SMBConnectionClosed,
    SMBException,
    SMBOSError,
    SMBResponseException,
)
from typing_extensions import Self

from hyperv_backup.errors import (
    AuthenticationError,
    ConfigError,
    ConnectionError,
    ConnectionTimeoutError,
    HyperVBackupError,
    TransferError,
)
from hyperv_backup.transfer.smb_errors import translate_status

__all__ = ["AuthProtocol", "SMBSession", "normalise", "unc_path"]

logger = logging.getLogger(__name__)

MiB = 2**20
_DRIVE = re.compile(r"^([A-Za-z]):(?:\\|$)")
_SHARE_NAME = re.compile(r'^[^\\/:*?"<>|]{1,80}$')
AuthProtocol = Literal["negotiate", "ntlm", "kerberos"]
_LOGON_FAILURE = 0xC000006D


def normalise(host_path: str) -> str:
    """Either separator; '.' and '..' resolved, as Windows would before opening."""
    return ntpath.normpath(host_path.replace("/", "\\"))


def unc_path(server: str, share: str, rest: str = "") -> str:
    """``\\\\server\\share\\rest``."""
    tail = rest.strip("\\")
    return f"\\\\{server}\\{share}" + (f"\\{tail}" if tail else "")


class SMBSession:
    """The share mapping and the pooled session of one SMB server (see the module docstring).

    ``server``: the host's name or address, as SMB clients reach it. ``shares``: host path
    prefix → share (optionally ``share\\sub\\folder``); ``None`` uses the administrative shares
    (``C$``, ``D$`` …). ``auth_protocol``: ``negotiate`` (Kerberos, falling back to NTLM),
    ``ntlm``, ``kerberos``.
    """

    _verb = "using"
    """How error messages name what this client does with a file ("reading", "writing")."""

    def __init__(
        self,
        server: str,
        *,
        port: int = 445,
        username: str,
        password: SecretStr | str,
        shares: Mapping[str, str] | None = None,
        encrypt: bool = True,
        timeout: float = 30.0,
        auth_protocol: AuthProtocol = "negotiate",
    ) -> None:
        if not server or "\\" in server or "/" in server:
            raise ConfigError(f"SMB server {server!r}: give a host name or address, no path")
        self.server = server
        self.port = port
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self.encrypt = encrypt
        self.timeout = timeout
        self.auth_protocol: AuthProtocol = auth_protocol
        self._lock = threading.Lock()
        self._credit_lock = threading.Lock()
        self._cache: dict[str, Any] = {}  # our own smbclient connection pool
        self._registered = False
        self._prefixes: dict[str, tuple[str, str]] = {}
        self.admin_shares = shares is None
        for prefix, share in (shares or {}).items():
            self.map_share(prefix, share)

    def __repr__(self) -> str:
        how = "admin shares" if self.admin_shares else f"{len(self._prefixes)} share mapping(s)"
        name = type(self).__name__
        return f"{name}({self.server}:{self.port}, {self.username!r}, {how})"

    # --- mapping ---------------------------------------------------------------------------

    def map_share(self, host_prefix: str, share: str) -> None:
        """Reach files under ``host_prefix`` through ``share`` (``name`` or ``name\\folder``)."""
        prefix = normalise(host_prefix).rstrip("\\")
        if not prefix or ntpath.splitdrive(prefix + "\\")[0] == "":
            raise ConfigError(f"share prefix {host_prefix!r} is not an absolute host path")
        name, _, folder = share.strip("\\").partition("\\")
        if not _SHARE_NAME.fullmatch(name):
            raise ConfigError(f"{share!r} is not a valid SMB share name")
        with self._lock:
            self._prefixes[prefix.casefold()] = (name, folder)

    def unmap_share(self, host_prefix: str) -> bool:
        """Forget a mapping added with :meth:`map_share`; False if there was none."""
        key = normalise(host_prefix).rstrip("\\").casefold()
        with self._lock:
            return self._prefixes.pop(key, None) is not None

    def unc(self, host_path: str) -> str | None:
        """The UNC path of ``host_path``, or None when no share covers it."""
        path = normalise(host_path)
        folded = path.casefold()
        with self._lock:
            prefixes = sorted(self._prefixes.items(), key=lambda kv: len(kv[0]), reverse=True)
        for prefix, (share, folder) in prefixes:
            if folded == prefix or folded.startswith(prefix + "\\"):
                rest = path[len(prefix) :].strip("\\")
                return unc_path(self.server, share, "\\".join(p for p in (folder, rest) if p))
        drive = _DRIVE.match(path)
        if self.admin_shares and drive is not None:
            return unc_path(self.server, f"{drive.group(1).upper()}$", path[2:])
        return None

    def reachable(self, host_path: str) -> bool:
        """True when a share covers ``host_path`` (decided locally: no network round trip)."""
        return self.unc(host_path) is not None

    def _require_unc(self, host_path: str) -> str:
        unc = self.unc(host_path)
        if unc is None:
            raise TransferError(
                f"No SMB share covers host path {host_path!r} ({self!r}). Map its folder with "
                "shares={...} or map_share(), or use the administrative shares (shares=None)."
            )
        return unc

    # --- the session -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Log off and disconnect every session of this client. Safe to call twice."""
        with self._lock:
            cache, self._cache = self._cache, {}
            self._registered = False
        for connection in cache.values():
            _close_connection(connection)

    def _smb_options(self) -> dict[str, Any]:
        """The keyword arguments every ``smbclient`` call of this client takes."""
        return {
            "username": self.username,
            "password": self._password.get_secret_value(),
            "port": self.port,
            "encrypt": self.encrypt,
            "connection_timeout": self.timeout,
            "connection_cache": self._cache,
            "auth_protocol": self.auth_protocol,
        }

    def _ensure_session(self) -> None:
        """Connect and authenticate once per server; every thread then shares the session."""
        with self._lock:
            if self._registered:
                return
            try:
                smbclient.register_session(self.server, **self._smb_options())
            except Exception as err:
                raise self._translate(err, None, unc_path(self.server, "")) from None
            self._registered = True
            logger.info("SMB session to %s:%d as %s", self.server, self.port, self.username)

    def _forget_tree(self, unc: str) -> bool:
        """Drop the pooled tree connect of ``unc``'s share; True if there was one."""
        share = "\\".join(unc.split("\\")[:4]).casefold()  # \\server\share
        forgot = False
        with self._lock:
            for connection in self._cache.values():
                for session in list(connection.session_table.values()):
                    for tree_id, tree in list(session.tree_connect_table.items()):
                        if str(tree.share_name).casefold() == share:
                            del session.tree_connect_table[tree_id]
                            forgot = True
        return forgot

    # --- errors ------------------------------------------------------------------------------

    def _status_error(self, status: int, what: str) -> HyperVBackupError:
        """The typed error for NT status ``status`` met while ``what``."""
        return translate_status(status, what, self.username, self.admin_shares)

    def _translate(self, err: BaseException, host_path: str | None, unc: str) -> BaseException:
        """A typed error for ``err`` that says what to check — and never the password."""
        if isinstance(err, HyperVBackupError):
            return err
        where = f"{self.server}:{self.port}"
        what = f"{self._verb} {host_path!r} ({unc})" if host_path else f"connecting to {where}"
        status = _status(err)
        if isinstance(err, SMBAuthenticationError) or status == _LOGON_FAILURE:
            return AuthenticationError(
                f"The SMB server {where} refused the credentials of {self.username!r} "
                "(logon failure): check the user name (DOMAIN\\user for a domain account) and "
                "the password."
            )
        if status is not None:
            return self._status_error(status, what)
        text = _scrub(str(err), self._password)
        if isinstance(err, (socket.timeout, TimeoutError)) or "timed out" in text:
            return ConnectionTimeoutError(
                f"Timed out {what}: the SMB server {where} did not answer within "
                f"{self.timeout:.0f} s. Check that TCP port {self.port} is open to it."
            )
        if isinstance(err, (SMBConnectionClosed, ValueError, OSError)):
            return ConnectionError(
                f"Could not reach the SMB server {where} while {what}: {text}. Check the "
                f"host name and that TCP port {self.port} (SMB) is open from this machine."
            )
        if isinstance(err, SMBException):
            return TransferError(f"SMB failed while {what}: {text}")
        return err


def _close_connection(connection: Any) -> None:
    """Log off and disconnect; a share the server removed meanwhile is not an error here."""
    try:
        if connection.transport.connected:
            for session in list(connection.session_table.values()):
                for tree_id, tree in list(session.tree_connect_table.items()):
                    try:
                        tree.disconnect()
                    except SMBException:  # the share is gone: nothing left to disconnect
                        session.tree_connect_table.pop(tree_id, None)
                session.disconnect(True, timeout=10)
    except Exception as err:  # closing must not raise over the real outcome
        logger.debug("logging off %s failed: %s", connection.server_name, err)
    finally:
        connection.disconnect(close=False)  # the socket and its receiving thread


def _status(err: BaseException) -> int | None:
    if isinstance(err, SMBOSError):
        return int(err.ntstatus)
    if isinstance(err, SMBResponseException):
        return int(err.status)
    return None


def _scrub(text: str, password: SecretStr) -> str:
    secret = password.get_secret_value()
    return text.replace(secret, "***") if secret else text
