"""A private Samba ``smbd`` on a loopback port: SMB shares for tests and the simulator.

>>> with SambaServer({"D$": "/tmp/host/D"}, password="s3cret") as smb:  # doctest: +SKIP
...     reader = SMBReader(smb.host, port=smb.port, username=smb.username,
...                        password=SecretStr("s3cret"))

Nothing of the machine's own Samba set-up is used or touched: the server runs from a private
configuration in a temporary folder (its databases, logs, pid and sockets live there too),
listens on one loopback address and port only, and is stopped — and the folder removed — by
:meth:`SambaServer.stop`. It needs the Debian package ``samba`` and root: ``smbd`` switches to
the logged-in user, and the login must be a Unix user (created with ``useradd -M`` when
missing, with no home and no shell; its Samba password lives only in the private database).

Files are read as the Unix user that runs the server (``force user``): a share serves what
this process can read, as an administrative share serves what the host's administrators can.
The SMB login only decides who may connect (``aliases`` are further login names for it, via
Samba's ``username map``). That is why the server refuses non-loopback addresses. Symbolic
links that lead out of a share are not followed (Samba's default), as a Windows SMB client
cannot follow a link to a shadow-copy device on the server either.

Shares change at run time: they live in an included file, rewritten on every change; then
``smbcontrol all reload-config`` makes every ``smbd`` process (the per-connection ones too)
re-read it, and each is pinged, so that the change is live when :meth:`SambaServer.add_share`
returns. A removed share's connections are cut (``smbcontrol all close-share``), as
``Remove-SmbShare -Force`` does on Windows. (Registry shares, ``net conf addshare``, would do
too; a plain include file needs no further tool and can be read in the private folder.)
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from hyperv_backup.errors import ConfigError

__all__ = ["SambaError", "SambaServer", "SambaShare", "find_smbd"]

logger = logging.getLogger(__name__)

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_SHARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9$._-]{0,79}$")
_UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 5.0
_INSTALL_HINT = "Install Samba with: apt-get install -y samba"
# Servers still running at interpreter exit are stopped then (smbd runs in a session of its
# own, so nothing else would end it).
_RUNNING: set[SambaServer] = set()


class SambaError(RuntimeError):
    """``smbd`` could not be found, started, configured or reloaded."""


@dataclass(frozen=True)
class SambaShare:
    """One share: its name, the local folder it serves, and who may connect.

    ``valid_users`` empty means the server's own login user.
    """

    name: str
    path: Path
    read_only: bool = True
    valid_users: tuple[str, ...] = field(default_factory=tuple)


def find_smbd() -> str:
    """The path of ``smbd``, or :class:`SambaError` saying how to install it."""
    return _find_tool("smbd")


def _find_tool(name: str) -> str:
    # /usr/sbin is not on every PATH (non-login shells, some CI images).
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if found is None:
        raise SambaError(f"{name} was not found (PATH and {', '.join(_SBIN)}). {_INSTALL_HINT}")
    return found


class SambaServer:
    """A Samba server on ``host:port`` (loopback only) serving ``shares``; a context manager.

    ``shares``: share name → local folder, or :class:`SambaShare` objects. ``port=0`` picks a
    free port. ``username`` is the login (a Unix user, created if missing); ``password``
    defaults to a random one (see :attr:`password`). ``aliases`` are further login names that
    map to the same user (Samba's ``username map``), so that e.g. the simulator's Windows
    account name ``administrator`` logs in without a Unix user of that name.
    """

    def __init__(
        self,
        shares: Mapping[str, Path | str] | Iterable[SambaShare] = (),
        *,
        username: str = "hyperv-backup",
        password: SecretStr | str | None = None,
        aliases: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        _check_loopback(host)
        if not _UNIX_USER.fullmatch(username):
            raise ConfigError(
                f"Samba login {username!r} is not a valid Unix user name (lower-case letters, "
                "digits, '-' and '_', starting with a letter)"
            )
        if isinstance(password, str):
            password = SecretStr(password)
        self.host = host
        self.username = username
        self.password: SecretStr = password or SecretStr(secrets.token_urlsafe(18))
        """The login's password (random unless given)."""
        self.aliases = tuple(a for a in aliases if a.casefold() != username)
        for alias in self.aliases:
            _check_config_value("login alias", alias)
        self._requested_port = port
        self._port: int | None = None
        self._shares: dict[str, SambaShare] = {}
        for share in _as_shares(shares):
            self._check_share(share)
            self._shares[share.name.casefold()] = share
        self._lock = threading.Lock()
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else "stopped"
        return f"SambaServer({where}, shares={sorted(s.name for s in self._shares.values())})"

    def __enter__(self) -> SambaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- properties ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port it listens on (raises unless started)."""
        if self._port is None:
            raise SambaError("the Samba server is not running")
        return self._port

    @property
    def pid(self) -> int:
        """The process id of the main ``smbd``."""
        if self._process is None:
            raise SambaError("the Samba server is not running")
        return self._process.pid

    @property
    def workdir(self) -> Path:
        """The private folder: configuration, databases, ``log/smbd.log``."""
        if self._workdir is None:
            raise SambaError("the Samba server is not running")
        return self._workdir

    @property
    def config_path(self) -> Path:
        """The private ``smb.conf`` (give it to ``smbclient -s`` / ``testparm``)."""
        return self.workdir / "smb.conf"

    @property
    def shares(self) -> dict[str, SambaShare]:
        """The shares served now, by name."""
        with self._lock:
            return {s.name: s for s in self._shares.values()}

    def unc(self, share: str, *parts: str) -> str:
        """``\\\\host\\share\\part...``, the UNC path a client opens."""
        return "\\".join(["", "", self.host, share, *parts])

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Write the private configuration, set the login, start ``smbd`` and wait for it."""
        if self._process is not None:
            return
        smbd = find_smbd()
        if os.geteuid() != 0:
            raise SambaError(
                "Running a private smbd needs root (smbd switches to the logged-in Unix user, "
                "and the login user may have to be created): run the tests as root or under "
                "sudo."
            )
        workdir = Path(tempfile.mkdtemp(prefix="hyperv-backup-samba-"))
        self._workdir = workdir
        try:
            self._port = self._requested_port or _free_port(self.host)
            for sub in ("private", "state", "lock", "cache", "pid", "ncalrpc", "log"):
                (workdir / sub).mkdir(mode=0o700)
            (workdir / "usermap").write_text(self._usermap(), encoding="utf-8")
            (workdir / "shares.conf").write_text(self._shares_conf(), encoding="utf-8")
            self.config_path.write_text(self._global_conf(), encoding="utf-8")
            _ensure_unix_user(self.username)
            self._set_password()
            log = (workdir / "log" / "stdout.log").open("wb")
            with log:
                # -F: stay in the foreground, so we own the process. A session of its own,
                # because smbd signals its whole process group when it stops: in ours, that
                # would terminate this process too. (--no-process-group keeps smbd from
                # making a new group, which in its own session it does not need.)
                self._process = subprocess.Popen(  # noqa: S603 - fixed argument list
                    [smbd, "-s", str(self.config_path), "-F", "--no-process-group"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            _RUNNING.add(self)
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        logger.info("samba: smbd %d serving %s on %s:%d", self.pid, self, self.host, self.port)

    def stop(self) -> None:
        """Stop ``smbd`` (and its per-connection children) and delete the private folder.

        Safe to call twice. The Unix user stays (other servers may share it); its password
        lived only in the deleted folder.
        """
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_TIMEOUT)
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        self._port = None

    # --- shares at run time --------------------------------------------------------------

    def add_share(
        self,
        name: str,
        path: Path | str,
        *,
        read_only: bool = True,
        valid_users: Iterable[str] = (),
    ) -> SambaShare:
        """Serve ``path`` as ``name`` (replacing a share of that name); live at once."""
        share = SambaShare(name, Path(path), read_only, tuple(valid_users))
        self._check_share(share)
        with self._lock:
            self._shares[name.casefold()] = share
            self._apply()
        return share

    def remove_share(self, name: str) -> bool:
        """Stop serving ``name`` and disconnect its users; False if there was no such share."""
        with self._lock:
            share = self._shares.pop(name.casefold(), None)
            if share is None:
                return False
            self._apply()
            if self._process is not None:
                # Windows' Remove-SmbShare -Force disconnects the share's users; so does this.
                self._smbcontrol("all", "close-share", share.name)
        return True

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of ``smbd``'s log, for error messages."""
        if self._workdir is None:
            return ""
        text = ""
        for name in ("smbd.log", "stdout.log"):
            path = self._workdir / "log" / name
            if path.exists():
                text += path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # --- internals -----------------------------------------------------------------------

    def _check_share(self, share: SambaShare) -> None:
        if not _SHARE_NAME.fullmatch(share.name):
            raise ConfigError(
                f"share name {share.name!r}: use 1-80 letters, digits, '$', '.', '_' or '-'"
            )
        _check_config_value("share path", str(share.path))
        for user in share.valid_users:
            _check_config_value("valid user", user)

    def _apply(self) -> None:
        """Rewrite the shares file and make a running ``smbd`` re-read it."""
        if self._workdir is None:
            return
        target = self._workdir / "shares.conf"
        scratch = target.with_suffix(".tmp")
        scratch.write_text(self._shares_conf(), encoding="utf-8")
        scratch.replace(target)  # smbd never reads a half-written file
        if self._process is not None:
            # To every smbd process, the per-connection children too: each re-reads its
            # configuration when it handles the message. A process handles its messages in
            # order, so once each has answered a ping, each has reloaded: the share is live
            # for the next tree connect on any connection. (Pinged one by one: "all ping"
            # cannot know how many answers to expect and always waits out its timeout.)
            self._smbcontrol("all", "reload-config")
            for pid in self._smbd_pids():
                self._smbcontrol(str(pid), "ping", required=pid == self.pid)

    def _smbcontrol(self, destination: str, *message: str, required: bool = True) -> None:
        """Send ``message`` to ``destination`` (a pid, or ``all``); a ping waits for the pong.

        ``required=False``: the process may have ended meanwhile (a client disconnected).
        """
        smbcontrol = _find_tool("smbcontrol")
        done = subprocess.run(  # noqa: S603 - fixed argument list
            [smbcontrol, "-s", str(self.config_path), "-t", "10", destination, *message],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0 and required:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise SambaError(f"smbcontrol {destination} {' '.join(message)} failed: {output}")

    def _smbd_pids(self) -> list[int]:
        """The main smbd and its children (per connection, notifyd, cleanupd)."""
        pids = [self.pid]
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text(encoding="ascii", errors="replace")
            except OSError:
                continue  # ended meanwhile
            match = re.search(r"^PPid:\s*(\d+)$", text, re.MULTILINE)
            if match is not None and int(match.group(1)) == self.pid:
                pids.append(int(status.parent.name))
        return pids

    def _set_password(self) -> None:
        smbpasswd = _find_tool("smbpasswd")
        secret = self.password.get_secret_value()
        done = subprocess.run(  # noqa: S603 - fixed argument list
            [smbpasswd, "-c", str(self.config_path), "-s", "-a", self.username],
            input=f"{secret}\n{secret}\n".encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise SambaError(f"smbpasswd could not set the password of {self.username!r}: {output}")

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise SambaError(
                    f"smbd exited with status {self._process.returncode} while starting. "
                    f"Its log:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise SambaError(
            f"smbd did not listen on {self.host}:{self.port} within {_START_TIMEOUT:.0f} s. "
            f"Its log:\n{self.log_tail()}"
        )

    def _global_conf(self) -> str:
        d = self.workdir
        lines = {
            "server role": "standalone server",
            "workgroup": "WORKGROUP",
            "netbios name": "HYPERV-SIM",
            "smb ports": str(self.port),
            "interfaces": self.host,
            "bind interfaces only": "yes",
            "disable netbios": "yes",
            "map to guest": "never",
            "restrict anonymous": "2",
            "server min protocol": "SMB2_10",
            "passdb backend": f"tdbsam:{d / 'private' / 'passdb.tdb'}",
            "private dir": str(d / "private"),
            "state directory": str(d / "state"),
            "lock directory": str(d / "lock"),
            "cache directory": str(d / "cache"),
            "pid directory": str(d / "pid"),
            "ncalrpc dir": str(d / "ncalrpc"),
            "log file": str(d / "log" / "smbd.log"),
            "max log size": "1000",
            "log level": "1",
            "username map": str(d / "usermap"),
            # Nothing from the machine's own Samba: no user shares, no registry shares,
            # no printers.
            "usershare path": "",
            "registry shares": "no",
            "load printers": "no",
            "printing": "bsd",
            "printcap name": "/dev/null",
            "disable spoolss": "yes",
            "include": str(d / "shares.conf"),
        }
        return "[global]\n" + "".join(f"    {k} = {v}\n" for k, v in lines.items())

    def _shares_conf(self) -> str:
        runner = pwd.getpwuid(os.geteuid()).pw_name
        out = []
        for share in self._shares.values():
            users = " ".join(share.valid_users) if share.valid_users else self.username
            out.append(
                f"[{share.name}]\n"
                f"    path = {share.path}\n"
                f"    read only = {'yes' if share.read_only else 'no'}\n"
                f"    valid users = {users}\n"
                f"    force user = {runner}\n"
                "    browseable = no\n"
            )
        return "\n".join(out)

    def _usermap(self) -> str:
        if not self.aliases:
            return ""
        names = " ".join(f'"{a}"' for a in self.aliases)
        return f"{self.username} = {names}\n"


def _as_shares(shares: Mapping[str, Path | str] | Iterable[SambaShare]) -> list[SambaShare]:
    if isinstance(shares, Mapping):
        return [SambaShare(name, Path(path)) for name, path in shares.items()]
    return list(shares)


def _check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"SambaServer listens on loopback addresses only (127.0.0.1, ::1), not {host!r}: "
            "it serves files with this process's rights."
        )


def _check_config_value(what: str, value: str) -> None:
    # One smb.conf line per value: a line break or quote would inject configuration.
    if not value or any(c in value for c in '\n\r"') or value != value.strip():
        raise ConfigError(f"{what} {value!r} cannot be written to smb.conf")


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _ensure_unix_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = _find_tool("useradd")
    done = subprocess.run(  # noqa: S603 - fixed argument list
        [
            useradd,
            "-M",
            "-s",
            "/usr/sbin/nologin",
            "-c",
            "hyperv-backup test SMB login",
            name,
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    # 9: created meanwhile by another test process.
    if done.returncode not in (0, 9):
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise SambaError(f"useradd could not create the Unix user {name!r}: {output}")
    logger.info("samba: created Unix user %s (no home, no shell)", name)


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()
