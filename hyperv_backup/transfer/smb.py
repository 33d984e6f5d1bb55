"""Read host files over SMB: the fast path for disk data.

>>> reader = SMBReader("hv01.corp.example", username="CORP\\\\backup",
...                    password=SecretStr("..."))                          # doctest: +SKIP
>>> with reader, reader.open("D:\\\\Hyper-V\\\\web01\\\\web01.vhdx") as disk:   # doctest: +SKIP
...     first = disk.read(4 * 2**20)

A host path becomes a UNC path on the host. By default through its administrative shares
(``D:\\VMs\\x.vhdx`` → ``\\\\hv01\\D$\\VMs\\x.vhdx``), which need an account in the host's
local Administrators group (and, for a local account, remote UAC turned off). Where those are
not allowed, ``shares`` maps host folders to shares of your own (``{"D:\\Hyper-V": "HyperV"}``
→ ``\\\\hv01\\HyperV\\...``): the longest matching prefix wins, case-insensitively. A staging
share made for one backup can be added while the reader is in use (:meth:`SMBReader.map_share`).

Streams read ahead on a background thread with several large reads in flight (see
:mod:`.smb_stream`), SMB 3 encryption is on by default, and one session per server is set up
once and shared by every thread. Errors come out typed and say what to check; the password
never appears in them. The mapping and the session live in :mod:`.smb_session`, shared with
the writer that restores onto the host (:mod:`.smb_writer`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, BinaryIO

import smbclient
from pydantic import SecretStr
from smbprotocol.exceptions import SMBOSError

from hyperv_backup.errors import ConfigError
from hyperv_backup.transfer.smb_session import AuthProtocol, SMBSession, unc_path
from hyperv_backup.transfer.smb_stream import PrefetchingSMBStream

__all__ = ["SMBReader", "unc_path"]

MiB = 2**20
_NETWORK_NAME_DELETED = 0xC00000C9


class SMBReader(SMBSession):
    """Opens host files over SMB (see the module docstring); a context manager.

    ``server``: the host's name or address, as SMB clients reach it. ``shares``: host path
    prefix → share (optionally ``share\\sub\\folder``); ``None`` uses the administrative shares
    (``C$``, ``D$`` …). ``read_size``: bytes per SMB READ (capped by what the server allows,
    8 MiB for Windows and Samba); ``read_ahead``: reads in flight per open file.
    ``auth_protocol``: ``negotiate`` (Kerberos, falling back to NTLM), ``ntlm``, ``kerberos``.
    """

    _verb = "reading"

    def __init__(
        self,
        server: str,
        *,
        port: int = 445,
        username: str,
        password: SecretStr | str,
        shares: Mapping[str, str] | None = None,
        encrypt: bool = True,
        read_size: int = 4 * MiB,
        read_ahead: int = 2,
        timeout: float = 30.0,
        auth_protocol: AuthProtocol = "negotiate",
    ) -> None:
        if read_size < 64 * 1024:
            raise ConfigError(f"read_size {read_size} is below one SMB credit (64 KiB)")
        if read_ahead < 1:
            raise ConfigError(f"read_ahead {read_ahead} must be at least 1")
        super().__init__(
            server,
            port=port,
            username=username,
            password=password,
            shares=shares,
            encrypt=encrypt,
            timeout=timeout,
            auth_protocol=auth_protocol,
        )
        self.read_size = read_size
        self.read_ahead = read_ahead

    # --- reading ---------------------------------------------------------------------------

    def open(self, host_path: str) -> BinaryIO:
        """A buffered stream of the file, reading ahead; the caller closes it.

        Raises :class:`~hyperv_backup.errors.HostFileNotFoundError`,
        :class:`~hyperv_backup.errors.ShareNotFoundError`,
        :class:`~hyperv_backup.errors.ReadAccessDeniedError`,
        :class:`~hyperv_backup.errors.AuthenticationError` or
        :class:`~hyperv_backup.errors.ConnectionError` (all of them ``OSError``).
        """
        unc = self._require_unc(host_path)
        self._ensure_session()
        try:
            raw_file = self._open_raw(unc)
        except SMBOSError as err:
            # A share removed and made again (a staging share of the next job): the pooled
            # tree connect is dead; connect to the share anew, once.
            if err.ntstatus != _NETWORK_NAME_DELETED or not self._forget_tree(unc):
                raise self._translate(err, host_path, unc) from None
            try:
                raw_file = self._open_raw(unc)
            except Exception as again:
                raise self._translate(again, host_path, unc) from None
        except Exception as err:
            raise self._translate(err, host_path, unc) from None

        def translate(err: BaseException) -> BaseException:
            return self._translate(err, host_path, unc)

        stream = PrefetchingSMBStream(
            raw_file,
            name=unc,
            read_size=self.read_size,
            depth=self.read_ahead,
            credit_lock=self._credit_lock,
            translate=translate,
        )
        return io.BufferedReader(stream, buffer_size=self.read_size)

    # --- internals -------------------------------------------------------------------------

    def _open_raw(self, unc: str) -> Any:
        return smbclient.open_file(
            unc,
            mode="rb",
            buffering=0,
            share_access="rw",  # Hyper-V may hold the file open; we only read it
            **self._smb_options(),
        )
