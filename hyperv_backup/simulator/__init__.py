"""An emulated Hyper-V host on loopback, for tests, demos and your own automation.

The simulator is a real WinRM / PowerShell Remoting endpoint: the unmodified pypsrp client
(and so hyperv-backup) talks to it exactly as to a Windows Server host. Behind the endpoint an
:class:`EmulatedHost` answers hyperv-backup's scripts from a scenario file.

>>> from hyperv_backup import HyperVHost
>>> from hyperv_backup.simulator import Simulator
>>> with Simulator() as sim, HyperVHost(sim.connection_settings()) as host:   # doctest: +SKIP
...     print([vm.name for vm in host.inventory()])

HTTPS with a freshly generated self-signed CA (``sim.ca_pem``) and Basic authentication is
the default; NTLM is offered too.

``Simulator(smb=True)`` also runs Samba on a loopback port (needs the ``samba`` package and
root): every drive of the host is its administrative share (``D$`` → ``<host_root>/D``,
writable, as an administrative share is to an administrator), and staging shares made by
``new-staging-share`` are served too (read-only; a share on a shadow copy's device serves
that shadow's frozen files), so that :class:`~hyperv_backup.transfer.smb.SMBReader` reads
the emulated host as a real one (``sim.smb_reader()``) and
:class:`~hyperv_backup.transfer.smb_writer.SMBWriter` restores onto it
(``sim.smb_writer()``; what it writes lands under ``host_root``). The SMB login is the
scenario's account, as on a Windows host.

The host is file-backed: its drives are folders under ``sim.host_root`` (``D:\\`` is
``<host_root>/D``, see ``sim.path_map()``), holding every VM's configuration, state and disk
files, which the scripts change as Hyper-V would. ``sim.emulator`` shows the run-time state
and an event log of what the host did. Everything is removed when the simulator stops.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from hyperv_backup.config import AuthMethod, ConnectionSettings, Timeouts
from hyperv_backup.simulator.emulator import (
    DiskImages,
    EmulatedHost,
    HookRecord,
    HostEvent,
    RecordedCall,
)
from hyperv_backup.simulator.samba import SambaError, SambaServer, SambaShare
from hyperv_backup.simulator.scenario import (
    FaultSpec,
    Scenario,
    default_scenario_path,
    load_scenario,
)
from hyperv_backup.simulator.wsman import WSManServer, generate_tls_material
from hyperv_backup.transfer.smb import SMBReader
from hyperv_backup.transfer.smb_writer import SMBWriter

__all__ = [
    "DiskImages",
    "EmulatedHost",
    "FaultSpec",
    "HookRecord",
    "HostEvent",
    "RecordedCall",
    "SambaError",
    "SambaServer",
    "Scenario",
    "Simulator",
    "default_scenario_path",
    "load_scenario",
]

logger = logging.getLogger(__name__)


class Simulator:
    """Start an emulated Hyper-V host on 127.0.0.1; a context manager.

    ``scenario`` is a :class:`Scenario`, a path to a YAML/JSON file, a dict, or None for the
    default scenario. ``port=0`` picks a free port. ``tls=False`` serves plain HTTP (clients
    then need NTLM, or Basic with ``encryption='never'``). ``host_root`` is where the host's
    drives are materialized (an empty or new folder; default: a temporary one); whatever is
    in it is removed on :meth:`stop`. ``disk_images='qemu'`` makes dynamic base disks real
    VHDX/VHD images (needs ``qemu-img``); the default writes plain deterministic files.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path | dict[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        auth: tuple[str, ...] = ("basic", "ntlm"),
        host_root: Path | None = None,
        disk_images: DiskImages = "plain",
        smb: bool = False,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.emulator = EmulatedHost(self.scenario, host_root=host_root, disk_images=disk_images)
        self._host = host
        self._port = port
        self._tls = tls
        self._auth = auth
        self._workdir: Path | None = None
        self._server: WSManServer | None = None
        self.ca_pem: Path | None = None
        self._smb = smb
        self.samba: SambaServer | None = None
        """The Samba server when started with ``smb=True``."""

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Materialize the host's files, generate TLS material (if TLS) and start serving."""
        if self._server is not None:
            return
        try:
            self.emulator.start()
            if self._smb:
                self.samba = self._start_samba()
            self._workdir = Path(tempfile.mkdtemp(prefix="hyperv-backup-sim-"))
            tls = None
            if self._tls:
                tls = generate_tls_material(self._workdir)
                self.ca_pem = tls.ca_pem
            creds = self.scenario.credentials
            server = WSManServer(
                self.emulator,
                users={creds.username: creds.password},
                host=self._host,
                port=self._port,
                tls=tls,
                auth=self._auth,
            )
            server.start()
        except BaseException:
            self.stop()
            raise
        self._server = server
        logger.info("simulator listening on %s", server.url)

    def stop(self) -> None:
        """Stop serving, let running host operations end, and delete every file it made.

        Safe to call twice.
        """
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        samba, self.samba = self.samba, None
        if samba is not None:
            self.emulator.attach_share_server(None)
            samba.stop()
        self.emulator.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _start_samba(self) -> SambaServer:
        creds = self.scenario.credentials
        # The Windows account ('CORP\\backup', 'backup@corp' or 'administrator') logs in as the
        # Unix user behind the server, by its user name.
        account = creds.username.replace("/", "\\").split("\\")[-1].split("@")[0]
        # Writable: an administrative share lets an administrator write (a restore does).
        shares = [
            SambaShare(f"{drive}$", self.host_root / drive, read_only=False)
            for drive in self.emulator.state.fs.drives
        ]
        samba = SambaServer(
            shares, password=creds.password, aliases=[account.casefold()], host=self._host
        )
        samba.start()
        self.emulator.attach_share_server(samba)
        return samba

    @property
    def server(self) -> WSManServer:
        """The running endpoint (raises if not started)."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; use it as a context manager")
        return self._server

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        port: int = self.server.port
        return port

    @property
    def url(self) -> str:
        """The WinRM endpoint URL."""
        url: str = self.server.url
        return url

    @property
    def host_root(self) -> Path:
        """The folder holding the host's drives (raises if not started)."""
        return self.emulator.host_root

    def local_path(self, host_path: str) -> Path:
        """Where a Windows path of the host (``D:\\Hyper-V\\...``) lives on this machine."""
        return self.emulator.local_path(host_path)

    def path_map(self) -> dict[str, Path]:
        """Each drive of the host (``"D:\\"``) and the local folder that holds it."""
        return self.emulator.path_map()

    @property
    def events(self) -> list[HostEvent]:
        """What the host did so far (checkpoints, merges, pauses, exports ...), oldest first."""
        return self.emulator.events

    @property
    def calls(self) -> list[RecordedCall]:
        """Every script call received so far."""
        return list(self.emulator.calls)

    @property
    def smb_server(self) -> str:
        """The address SMB clients connect to (``smb=True`` only)."""
        return self._samba_running().host

    @property
    def smb_port(self) -> int:
        """The TCP port Samba listens on (``smb=True`` only)."""
        return self._samba_running().port

    @property
    def smb_username(self) -> str:
        """The SMB login: the scenario's account, as on a Windows host."""
        return self.scenario.credentials.username

    @property
    def smb_password(self) -> SecretStr:
        """The SMB password: the scenario's."""
        return SecretStr(self.scenario.credentials.password)

    def smb_reader(self, **options: Any) -> SMBReader:
        """An :class:`SMBReader` of this host (``smb=True`` only); ``options`` go to it."""
        options.setdefault("port", self.smb_port)
        options.setdefault("username", self.smb_username)
        options.setdefault("password", self.smb_password)
        return SMBReader(self.smb_server, **options)

    def smb_writer(self, **options: Any) -> SMBWriter:
        """An :class:`SMBWriter` of this host (``smb=True`` only); ``options`` go to it."""
        options.setdefault("port", self.smb_port)
        options.setdefault("username", self.smb_username)
        options.setdefault("password", self.smb_password)
        return SMBWriter(self.smb_server, **options)

    def _samba_running(self) -> SambaServer:
        if self.samba is None:
            raise RuntimeError("the simulator runs no Samba server: start it with smb=True")
        return self.samba

    def add_fault(self, fault: FaultSpec) -> None:
        """Inject a fault into a later call."""
        self.emulator.add_fault(fault)

    def connection_settings(
        self,
        *,
        auth: AuthMethod = "basic",
        password: str | None = None,
        timeouts: Timeouts | None = None,
        trust_ca: bool = True,
    ) -> ConnectionSettings:
        """Settings with which hyperv-backup reaches this simulator."""
        creds = self.scenario.credentials
        extra: dict[str, Any] = {}
        if self._tls and trust_ca:
            extra["ca_bundle"] = self.ca_pem
        if not self._tls and auth == "basic":
            extra["encryption"] = "never"
        if timeouts is not None:
            extra["timeouts"] = timeouts
        return ConnectionSettings(
            host=self._host,
            port=self.port,
            use_tls=self._tls,
            auth=auth,
            username=creds.username,
            password=SecretStr(password if password is not None else creds.password),
            **extra,
        )
