#!/usr/bin/python
# Copyright: hyperv-backup maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module: back up Hyper-V VMs with the hyperv-backup Python package."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hyperv_backup
short_description: Back up Hyper-V virtual machines agentlessly over PowerShell Remoting
version_added: "0.1.0"
description:
  - Backs up virtual machines of one Microsoft Hyper-V host into a deduplicating, optionally
    encrypted hyperv-backup repository (a folder or S3), or as plain Export-VM folders.
  - Each VM is frozen consistently (production or standard checkpoint, or pause plus host
    VSS), captured whole (configuration, disks with their chains, saved state, checkpoint
    tree), stored, and everything created on the host is removed again, also on failure.
  - The module runs on the management machine, not on the Hyper-V host. Target C(localhost)
    in the play, or delegate the task to it (C(delegate_to) V(localhost)). It reaches the
    host over WinRM/PowerShell Remoting and reads disk data over SMB (or through local
    mounts, O(path_map)).
  - In check mode it only plans, touching nothing on the host or at the destination. It
    returns for each selected VM the capture method and the consistency it would get, why,
    what would be excluded, and the estimated size.
author:
  - hyperv-backup maintainers
requirements:
  - The C(hyperv-backup) Python package (Python 3.10 or later) importable by the Python
    interpreter Ansible runs the module with. Set C(ansible_python_interpreter) for
    C(localhost) to that interpreter, for example the C(bin/python) of the virtualenv
    hyperv-backup is installed in.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Plans only; nothing is created on the host or at the destination.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the management machine (a Linux or other POSIX controller or node).
options:
  state:
    description:
      - V(present) runs a backup of the selected VMs (in check mode, plans it).
    type: str
    choices: [present]
    default: present
  host:
    description:
      - Name or IP address of the Hyper-V host.
    type: str
    required: true
  port:
    description:
      - WinRM port. Default V(5986) with O(tls), V(5985) without.
    type: int
  auth:
    description:
      - Authentication protocol. V(negotiate) uses Kerberos when it can, else NTLM.
      - V(basic) over plain HTTP is refused unless O(message_encryption=never), because the
        password would travel readable.
    type: str
    choices: [negotiate, ntlm, kerberos, basic, credssp, certificate]
    default: negotiate
  username:
    description:
      - Account on the host, C(DOMAIN\user) or C(user@domain). Needs Hyper-V administrator
        rights. The same account reads disk data over SMB.
    type: str
  password:
    description:
      - Password of O(username). Never logged or returned. Keep it in Ansible Vault.
    type: str
  tls:
    description:
      - Use HTTPS (WinRM over TLS). V(false) uses plain HTTP, where V(ntlm)/V(negotiate)
        encrypt the messages.
    type: bool
    default: true
  validate_certs:
    description:
      - Verify the host's TLS certificate. Turning this off lets anyone in the path read the
        credentials; prefer O(ca_path).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) that signed the host's certificate.
    type: path
  client_cert:
    description:
      - Client certificate (PEM) for O(auth=certificate).
    type: path
  client_key:
    description:
      - Private key (PEM) of O(client_cert).
    type: path
  message_encryption:
    description:
      - WinRM message encryption. V(auto) encrypts plain HTTP with NTLM or Kerberos.
    type: str
    choices: [auto, always, never]
    default: auto
  connect_timeout:
    description:
      - Seconds to wait for the TCP/TLS connection.
    type: float
    default: 30.0
  operation_timeout:
    description:
      - WS-Management operation timeout, in seconds; the host answers a long poll at the latest
        after this long.
    type: int
    default: 20
  script_timeout:
    description:
      - Default deadline of one script on the host, in seconds. Exports and merges have their
        own longer deadlines.
    type: float
    default: 600.0
  vms:
    description:
      - Names of the VMs to back up. Wildcards C(*), C(?) and C([ab]) match case-insensitively.
      - Give O(vms) or O(all=true), not both.
    type: list
    elements: str
  all:
    description:
      - Back up every VM on the host (minus O(exclude)).
    type: bool
    default: false
  exclude:
    description:
      - Leave out the VMs matching these names or wildcards.
    type: list
    elements: str
    default: []
  consistency:
    description:
      - V(app_required) fails a VM that cannot be application-consistent.
      - V(app_preferred) is application-consistent where the guest can do it, else
        crash-consistent; the result says which and why.
      - V(crash_ok) takes standard checkpoints and never asks the guest to flush.
    type: str
    choices: [app_required, app_preferred, crash_ok]
    default: app_preferred
  capture:
    description:
      - V(in_place) reads frozen disks where they lie (no staging space); V(export) copies the
        VM with Export-VM into a staging folder first; V(auto) reads in place when the disk
        reader reaches the VM's files, else exports.
    type: str
    choices: [auto, in_place, export]
    default: auto
  passthrough:
    description:
      - What to do with pass-through disks, which Hyper-V cannot back up. V(skip_disk) backs up
        the rest of the VM and reports the disk as excluded; V(fail_vm) fails the VM.
    type: str
    choices: [skip_disk, fail_vm]
    default: skip_disk
  suspend_replication:
    description:
      - Suspend Hyper-V Replica for each replicated VM during its backup; it is always resumed.
    type: bool
    default: false
  parallel:
    description:
      - How many VMs are backed up at once (1 to 16).
    type: int
    default: 2
  retry_attempts:
    description:
      - Tries for "conflicting operation" errors and busy replication states, with backoff.
    type: int
    default: 6
  merge_timeout:
    description:
      - Seconds to wait for a checkpoint merge after the backup.
    type: int
    default: 3600
  staging_root:
    description:
      - Folder on the host for exports. Default C(C:\ProgramData\hyperv-backup\staging).
    type: str
  tags:
    description:
      - Labels stored with each VM backup (find them later with C(hyperv-backup snapshots --tag)).
    type: list
    elements: str
    default: []
  hooks:
    description:
      - PowerShell commands run on the host. They see C($VMName), C($VMId), C($JobId) and
        C($Phase) as variables. A failing before-hook fails the job or the VM before anything
        is touched; after-hooks always run and their failures are reported.
    type: dict
    suboptions:
      before_job:
        description: Commands run once before the first VM.
        type: list
        elements: str
        default: []
      after_job:
        description: Commands run once after the last VM.
        type: list
        elements: str
        default: []
      before_vm:
        description: Commands run before each VM.
        type: list
        elements: str
        default: []
      after_vm:
        description: Commands run after each VM.
        type: list
        elements: str
        default: []
  repository:
    description:
      - Store the backup in this hyperv-backup repository, a folder on the management machine
        or C(s3://BUCKET/PREFIX). Each VM backup becomes one snapshot.
      - Give O(repository) or O(to), not both.
    type: str
  repository_password:
    description:
      - Password of an encrypted repository. Never logged or returned.
    type: str
  init_repository:
    description:
      - Create the repository when O(repository) holds none yet (encrypted with
        O(repository_password), which is then required). An existing repository is opened as
        it is.
    type: bool
    default: false
  to:
    description:
      - Store plain Export-VM folders, ready for Import-VM, in this folder or under
        C(s3://BUCKET/PREFIX), instead of a repository.
    type: str
  s3_endpoint:
    description:
      - URL of an S3-compatible server for C(s3://) destinations (default AWS).
    type: str
  s3_region:
    description:
      - S3 region.
    type: str
  s3_profile:
    description:
      - AWS profile holding the S3 credentials. Without it and without O(s3_access_key), the
        usual AWS credential chain (environment, shared files, instance role) is used.
    type: str
  s3_access_key:
    description:
      - S3 access key id (with O(s3_secret_key)).
    type: str
  s3_secret_key:
    description:
      - S3 secret access key. Never logged or returned.
    type: str
  path_map:
    description:
      - Read the host's files through local mounts instead of SMB, as a mapping of host path
        prefix to local folder; for example the key C(D:\) with the value C(/mnt/hv01-d)
        reads C(D:\Hyper-V\web01.vhdx) from C(/mnt/hv01-d/Hyper-V/web01.vhdx).
    type: dict
  smb_port:
    description:
      - SMB port of the host; disk data is read over SMB with O(username) and O(password).
    type: int
    default: 445
  smb_share:
    description:
      - Read files under a host folder through this share instead of the administrative
        shares (C(D$)), as a mapping of host folder to share name; for example the key
        C(D:\Hyper-V) with the value C(HyperV).
    type: dict
  smb_encrypt:
    description:
      - Encrypt SMB traffic (SMB 3).
    type: bool
    default: true
  state_dir:
    description:
      - Folder on the management machine for the journal of host resources and the host lock.
        Default C($HYPERV_BACKUP_STATE_DIR), else C($XDG_STATE_HOME/hyperv-backup), else
        C(~/.local/state/hyperv-backup). Keep it between runs, so that a run can undo what a
        killed one left on the host.
    type: path
  fail_on_partial:
    description:
      - Fail the task when only some VMs were backed up, or when something needs attention (a
        cleanup step, an after-hook or a warning). With V(false) such a run succeeds, and
        RV(status) is V(partial).
    type: bool
    default: true
notes:
  - The task fails when no VM was backed up, and by default (O(fail_on_partial)) also when only
    some were. RV(changed) is true when at least one VM backup was stored.
  - Give absolute paths for O(repository), O(to) and O(state_dir). Ansible runs the module in
    a working directory of its choosing (for a local connection, the playbook's folder); the
    module warns about a relative path.
  - Passwords are never logged or returned; error messages of hyperv-backup do not contain
    them either.
  - The same playbook can be tried against the emulated Hyper-V host of
    C(hyperv-backup simulator serve); see C(docs/ansible.md) in hyperv-backup.
"""

EXAMPLES = r"""
- name: Back up every VM of hv01 except the scratch ones into an encrypted repository
  hyperv_backup.hyperv.hyperv_backup:
    host: hv01.corp.example
    username: CORP\backup
    password: "{{ vault_hv01_password }}"
    ca_path: /etc/pki/corp-ca.pem
    all: true
    exclude: ["scratch-*"]
    repository: /srv/backups/hyperv
    repository_password: "{{ vault_repository_password }}"
    init_repository: true
  delegate_to: localhost
  register: nightly

- name: Application-consistent or nothing, for the SQL servers, into S3
  hyperv_backup.hyperv.hyperv_backup:
    host: hv02.corp.example
    username: backup@corp.example
    password: "{{ vault_hv02_password }}"
    vms: ["sql*"]
    consistency: app_required
    suspend_replication: true
    repository: s3://corp-backups/hyperv
    repository_password: "{{ vault_repository_password }}"
    s3_region: eu-central-1
    tags: [sql, nightly]
  delegate_to: localhost

- name: Plain Export-VM folders on a NAS mount, readable by Import-VM
  hyperv_backup.hyperv.hyperv_backup:
    host: hv03.corp.example
    username: CORP\backup
    password: "{{ vault_hv03_password }}"
    vms: [web01, web02]
    to: /mnt/nas/hyperv-exports
    fail_on_partial: false
  delegate_to: localhost

- name: What would tonight's backup do? (check mode plans only)
  hyperv_backup.hyperv.hyperv_backup:
    host: hv01.corp.example
    username: CORP\backup
    password: "{{ vault_hv01_password }}"
    all: true
    repository: /srv/backups/hyperv
  delegate_to: localhost
  check_mode: true
  register: plan

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.method }} -> {{ item.consistency_expected }} ({{ item.reason }})"
  loop: "{{ plan.vms }}"
"""

RETURN = r"""
msg:
  description: What happened, in one sentence, with the failed VMs and why.
  returned: always
  type: str
  sample: >-
    Backed up 3 of 3 VM(s) from hv01.corp.example (42.0 GiB) into repository
    /srv/backups/hyperv.
status:
  description:
    - V(success) (every VM backed up, nothing needs attention), V(partial) (some VMs backed up,
      or warnings), or V(failed) (nothing backed up).
    - In check mode, the status the plan predicts.
  returned: always
  type: str
  sample: success
exit_code:
  description: The exit code the C(hyperv-backup backup) command would give, 0 success,
    3 partial, 1 failed.
  returned: always
  type: int
  sample: 0
job_id:
  description: The id of the job (also the folder name of plain backups).
  returned: when a backup ran
  type: str
  sample: 20261126T071500Z-3f9a1c
host:
  description: The host backed up.
  returned: always
  type: str
  sample: hv01.corp.example
destination:
  description: Where the backup went, C(repository PATH) or C(folders PATH).
  returned: always
  type: str
  sample: repository /srv/backups/hyperv
repository_created:
  description: Whether O(init_repository) created the repository in this run.
  returned: when O(repository) is given
  type: bool
  sample: false
error:
  description: Why the job as a whole failed (it could not connect, lock, start ...).
  returned: when the job failed as a whole
  type: str
warnings_job:
  description: Job-level warnings (cleanup, after-job hooks).
  returned: when a backup ran
  type: list
  elements: str
cleanup:
  description: What the run found left on the host by killed runs and undid (and what it could
    not).
  returned: when a backup ran
  type: dict
  contains:
    undone:
      description: Resources undone.
      type: list
      elements: str
    errors:
      description: Resources that could not be undone.
      type: list
      elements: str
vms:
  description:
    - One entry per selected VM. In check mode the planned outcome, with RV(vms[].status)
      V(planned) or V(would_fail).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: VM name.
      type: str
      sample: web01
    id:
      description: VM id.
      type: str
    status:
      description: V(success) or V(failed); in check mode V(planned) or V(would_fail).
      type: str
      sample: success
    consistency_requested:
      description: The O(consistency) policy.
      type: str
      sample: app_preferred
    consistency_achieved:
      description: V(application), V(crash), or V(offline) (the VM was not running); empty
        when the VM failed. In check mode see RV(vms[].consistency_expected).
      type: str
      sample: application
    consistency_expected:
      description: The consistency the plan expects.
      returned: in check mode
      type: str
      sample: application
    consistency_reason:
      description: Why that consistency (or why not better).
      type: str
    method:
      description: How the VM was frozen, e.g. V(production_checkpoint), V(standard_checkpoint),
        V(pause_and_vss), V(vss_snapshot).
      type: str
    capture_mode:
      description: V(in_place) or V(export).
      type: str
    bytes:
      description: Bytes captured.
      type: int
    estimated_bytes:
      description: Bytes the plan expects to capture.
      returned: in check mode
      type: int
    files:
      description: Number of files captured.
      type: int
    excluded:
      description: What of the VM is not in the backup, why, and what to do about it
        (pass-through disks).
      type: list
      elements: dict
      contains:
        item:
          description: What was left out.
          type: str
        reason:
          description: Why.
          type: str
        workarounds:
          description: How to get it backed up.
          type: list
          elements: str
    retries:
      description: How often "conflicting operation" errors were retried.
      type: int
    retry_reasons:
      description: The errors that were retried.
      type: list
      elements: str
    replication_role:
      description: Hyper-V Replica role (V(None), V(Primary), V(Replica) ...).
      type: str
    replication_suspended:
      description: Whether replication was suspended for the backup.
      type: bool
    location:
      description: Where the VM backup was stored (snapshot or folder).
      type: str
    warnings:
      description: Things that need attention although the VM was backed up.
      type: list
      elements: str
    error:
      description: Why the VM failed (in check mode, why it would).
      type: str
    duration_seconds:
      description: Seconds the VM's backup took.
      type: float
excluded_by_selection:
  description: VMs left out by O(exclude).
  returned: in check mode
  type: list
  elements: str
plan:
  description: The whole plan as hyperv-backup computes it (C(hyperv-backup plan --json)),
    host information included.
  returned: in check mode
  type: dict
"""

import sys  # noqa: E402 - Ansible wants the documentation first
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

LIBRARY_IMPORT_ERROR: str | None = None
try:
    from pydantic import SecretStr, ValidationError

    from hyperv_backup import (
        BackupJob,
        BackupPolicy,
        ConnectionSettings,
        DirectorySink,
        Hooks,
        HyperVBackupError,
        LocalPathReader,
        PlainSink,
        PowerShellHook,
        RetryPolicy,
        Selection,
        SMBReader,
        Timeouts,
    )
    from hyperv_backup.repository import Repository
    from hyperv_backup.targets import LocalTarget, S3Settings, S3Target
except ImportError:
    LIBRARY_IMPORT_ERROR = traceback.format_exc()


ARGUMENT_SPEC: dict[str, Any] = {
    "state": {"type": "str", "choices": ["present"], "default": "present"},
    # connection
    "host": {"type": "str", "required": True},
    "port": {"type": "int"},
    "auth": {
        "type": "str",
        "default": "negotiate",
        "choices": ["negotiate", "ntlm", "kerberos", "basic", "credssp", "certificate"],
    },
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "tls": {"type": "bool", "default": True},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "client_cert": {"type": "path"},
    "client_key": {"type": "path", "no_log": False},
    "message_encryption": {
        "type": "str",
        "default": "auto",
        "choices": ["auto", "always", "never"],
    },
    "connect_timeout": {"type": "float", "default": 30.0},
    "operation_timeout": {"type": "int", "default": 20},
    "script_timeout": {"type": "float", "default": 600.0},
    # selection
    "vms": {"type": "list", "elements": "str"},
    "all": {"type": "bool", "default": False},
    "exclude": {"type": "list", "elements": "str", "default": []},
    # policy
    "consistency": {
        "type": "str",
        "default": "app_preferred",
        "choices": ["app_required", "app_preferred", "crash_ok"],
    },
    "capture": {"type": "str", "default": "auto", "choices": ["auto", "in_place", "export"]},
    "passthrough": {"type": "str", "default": "skip_disk", "choices": ["skip_disk", "fail_vm"]},
    "suspend_replication": {"type": "bool", "default": False},
    "parallel": {"type": "int", "default": 2},
    "retry_attempts": {"type": "int", "default": 6},
    "merge_timeout": {"type": "int", "default": 3600},
    "staging_root": {"type": "str"},
    "tags": {"type": "list", "elements": "str", "default": []},
    "hooks": {
        "type": "dict",
        "options": {
            phase: {"type": "list", "elements": "str", "default": []}
            for phase in ("before_job", "after_job", "before_vm", "after_vm")
        },
    },
    # destination
    "repository": {"type": "str"},
    "repository_password": {"type": "str", "no_log": True},
    "init_repository": {"type": "bool", "default": False},
    "to": {"type": "str"},
    "s3_endpoint": {"type": "str"},
    "s3_region": {"type": "str"},
    "s3_profile": {"type": "str"},
    "s3_access_key": {"type": "str", "no_log": False},
    "s3_secret_key": {"type": "str", "no_log": True},
    # how disk data is read
    "path_map": {"type": "dict"},
    "smb_port": {"type": "int", "default": 445},
    "smb_share": {"type": "dict"},
    "smb_encrypt": {"type": "bool", "default": True},
    # bookkeeping and outcome
    "state_dir": {"type": "path"},
    "fail_on_partial": {"type": "bool", "default": True},
}


class ModuleError(Exception):
    """A problem to report with fail_json; its text is the task's message."""


def main() -> None:
    """Entry point: validate, then plan (check mode) or back up."""
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[("repository", "to"), ("path_map", "smb_share")],
        required_one_of=[("repository", "to")],
        required_together=[("client_cert", "client_key"), ("s3_access_key", "s3_secret_key")],
        required_if=[("auth", "certificate", ("client_cert", "client_key"))],
    )
    if LIBRARY_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("hyperv-backup").rstrip(".")
            + ". This module ran with "
            + _interpreter()
            + ": set ansible_python_interpreter (for localhost, or the host the task is "
            "delegated to) to the Python that has hyperv-backup installed, e.g. "
            "/opt/hyperv-backup/bin/python.",
            exception=LIBRARY_IMPORT_ERROR,
        )
    params = module.params
    if params["validate_certs"] is False and params["tls"]:
        module.warn(
            "validate_certs=false: the host's TLS certificate is not verified, so anyone in "
            "the network path could read the credentials. Give ca_path instead."
        )
    for option in ("repository", "to", "state_dir"):
        value = params[option]
        if value and not value.startswith("s3://") and not Path(value).is_absolute():
            module.warn(
                f"{option} {value!r} is a relative path: it is taken relative to the module's "
                f"working directory, here {Path.cwd()}. Give an absolute path."
            )
    try:
        selection = _selection(params)
        settings = _settings(params)
        policy = _policy(params)
        if module.check_mode:
            result = _plan(params, settings, policy, selection)
        else:
            result = _backup(params, settings, policy, selection)
    except ModuleError as error:
        module.fail_json(msg=str(error), changed=False)
    except HyperVBackupError as error:
        module.fail_json(msg=f"{type(error).__name__}: {error}", changed=False)
    except Exception as error:  # a bug, not a situation: keep the traceback for -vvv
        module.fail_json(
            msg=f"Unexpected {type(error).__name__}: {error}",
            exception=traceback.format_exc(),
            changed=False,
        )
    if result["failed"]:
        module.fail_json(**result)
    module.exit_json(**result)


def _interpreter() -> str:
    return sys.executable or "(unknown)"


# --- building the library's objects from the options ------------------------------------------


def _problems(error: Any) -> str:
    """Only the messages of a ValidationError: its default text quotes the input values."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()))
        message = str(item.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _selection(params: dict[str, Any]) -> Selection:
    if params["init_repository"] and not params["repository"]:
        raise ModuleError("init_repository needs repository (it creates a repository there).")
    names = params["vms"] or []
    if params["all"] and names:
        raise ModuleError("Give either vms (names or wildcards) or all=true, not both.")
    if not params["all"] and not names:
        raise ModuleError(
            "No VMs selected: give vms (names or wildcards, e.g. ['web*']) or all=true."
        )
    try:
        return Selection(names=names, all=params["all"], exclude=params["exclude"] or [])
    except ValidationError as error:
        raise ModuleError(f"Invalid selection: {_problems(error)}") from None


def _settings(params: dict[str, Any]) -> ConnectionSettings:
    if params["ca_path"] and not params["validate_certs"]:
        raise ModuleError("ca_path is given but validate_certs is false; choose one.")
    fields: dict[str, Any] = {
        "host": params["host"],
        "port": params["port"],
        "use_tls": params["tls"],
        "auth": params["auth"],
        "username": params["username"],
        "password": SecretStr(params["password"]) if params["password"] is not None else None,
        "cert_validation": params["validate_certs"],
        "ca_bundle": params["ca_path"],
        "certificate_pem": params["client_cert"],
        "certificate_key_pem": params["client_key"],
        "encryption": params["message_encryption"],
    }
    try:
        fields["timeouts"] = Timeouts(
            connect=params["connect_timeout"],
            operation=params["operation_timeout"],
            script=params["script_timeout"],
        )
        return ConnectionSettings(**fields)
    except ValidationError as error:
        raise ModuleError(f"Invalid connection options: {_problems(error)}") from None


def _policy(params: dict[str, Any]) -> BackupPolicy:
    hooks = params["hooks"] or {}
    extra: dict[str, Any] = {}
    if params["staging_root"]:
        extra["staging_root"] = params["staging_root"]
    try:
        return BackupPolicy(
            consistency=params["consistency"],
            capture=params["capture"],
            passthrough=params["passthrough"],
            suspend_replication=params["suspend_replication"],
            parallel_vms=params["parallel"],
            merge_timeout=params["merge_timeout"],
            retry=RetryPolicy(attempts=params["retry_attempts"]),
            tags=params["tags"] or [],
            hooks=Hooks(
                **{
                    phase: [PowerShellHook(command=c) for c in hooks.get(phase) or []]
                    for phase in ("before_job", "after_job", "before_vm", "after_vm")
                }
            ),
            **extra,
        )
    except ValidationError as error:
        raise ModuleError(f"Invalid backup policy: {_problems(error)}") from None


def _reader(params: dict[str, Any], settings: ConnectionSettings) -> Any:
    """Local mounts (path_map) or SMB with the connection's account (the default)."""
    if params["path_map"]:
        mapping = {str(k): str(v) for k, v in params["path_map"].items()}
        if any(not k or not v for k, v in mapping.items()):
            raise ModuleError("path_map: every entry needs a host prefix and a local folder.")
        return LocalPathReader(mapping)
    if not settings.username or settings.password is None:
        raise ModuleError(
            "Disk data is read over SMB with the connection's username and password; give "
            "both, or path_map for local mounts of the host's drives."
        )
    shares = None
    if params["smb_share"]:
        shares = {str(k): str(v) for k, v in params["smb_share"].items()}
    return SMBReader(
        settings.host,
        port=params["smb_port"],
        username=settings.username,
        password=settings.password,
        shares=shares,
        encrypt=params["smb_encrypt"],
    )


def _s3_target(params: dict[str, Any], url: str) -> S3Target:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    extra: dict[str, Any] = {}
    if params["s3_access_key"]:
        extra["access_key_id"] = SecretStr(params["s3_access_key"])
        extra["secret_access_key"] = SecretStr(params["s3_secret_key"])
    try:
        settings = S3Settings(
            bucket=bucket,
            prefix=prefix.strip("/"),
            endpoint_url=params["s3_endpoint"],
            region=params["s3_region"],
            profile=params["s3_profile"],
            **extra,
        )
    except ValidationError as error:
        raise ModuleError(f"{url!r}: {_problems(error)}") from None
    return S3Target(settings)


def _state_dir(params: dict[str, Any]) -> Path | None:
    return Path(params["state_dir"]) if params["state_dir"] else None


def _destination(params: dict[str, Any]) -> str:
    if params["repository"]:
        return f"repository {params['repository']}"
    return f"folders {params['to']}"


# --- check mode ---------------------------------------------------------------------------------


def _plan(
    params: dict[str, Any],
    settings: ConnectionSettings,
    policy: BackupPolicy,
    selection: Selection,
) -> dict[str, Any]:
    """What a backup would do; touches nothing on the host or at the destination."""
    job = BackupJob(
        settings, policy, reader=_reader(params, settings), state_dir=_state_dir(params)
    )
    plan = job.plan(selection)
    vms = [
        {
            "name": v.vm_name,
            "id": v.vm_id,
            "status": "would_fail" if v.will_fail else "planned",
            "consistency_requested": policy.consistency.value,
            "consistency_expected": v.expected.value if v.expected else None,
            "consistency_reason": v.reason,
            "method": v.method.value if v.method else None,
            "capture_mode": v.capture_mode.value,
            "estimated_bytes": v.estimated_bytes,
            "excluded": [e.model_dump(mode="json") for e in v.excluded],
            "replication_role": v.replication_role,
            "error": v.will_fail,
        }
        for v in plan.vms
    ]
    planned = [v for v in vms if v["status"] == "planned"]
    failing = [v for v in vms if v["status"] == "would_fail"]
    if not planned:
        status, exit_code = "failed", 1
    elif failing:
        status, exit_code = "partial", 3
    else:
        status, exit_code = "success", 0
    where = _destination(params)
    msg = (
        f"Would back up {len(planned)} of {len(vms)} VM(s) from {settings.host} "
        f"(about {_size(plan.estimated_bytes)}) into {where}."
    )
    if plan.excluded_by_selection:
        msg += " Left out by exclude: " + ", ".join(plan.excluded_by_selection) + "."
    if failing:
        msg += " Would fail: " + "; ".join(f"{v['name']}: {v['error']}" for v in failing)
    return {
        "changed": bool(planned),
        "failed": _failed(status, params),
        "status": status,
        "exit_code": exit_code,
        "host": settings.host,
        "destination": where,
        "vms": vms,
        "excluded_by_selection": plan.excluded_by_selection,
        "plan": plan.model_dump(mode="json"),
        "msg": msg,
    }


# --- the backup ---------------------------------------------------------------------------------


def _backup(
    params: dict[str, Any],
    settings: ConnectionSettings,
    policy: BackupPolicy,
    selection: Selection,
) -> dict[str, Any]:
    reader = _reader(params, settings)
    repository = None
    created = False
    if params["repository"]:
        repository, created = _open_repository(params)
        sink: Any = repository
    elif params["to"].startswith("s3://"):
        # Plain objects any S3 tool can fetch: <prefix>/<host>/<VM>/<job>/...
        sink = PlainSink(_s3_target(params, params["to"]))
    else:
        sink = DirectorySink(params["to"])
    job = BackupJob(settings, policy, sink=sink, reader=reader, state_dir=_state_dir(params))
    try:
        if repository is not None:
            # A forget/prune started meanwhile must not delete what this job still needs.
            with repository.shared_lock(f"backup of {settings.host}"):
                job_result = job.run(selection)
        else:
            job_result = job.run(selection)
    finally:
        if repository is not None:
            repository.close()
    vms = [_vm_result(v) for v in job_result.vms]
    status = job_result.status.value
    stored = [v for v in job_result.vms if v.status.value == "success"]
    result: dict[str, Any] = {
        "changed": bool(stored) or created,
        "failed": _failed(status, params),
        "status": status,
        "exit_code": job_result.exit_code,
        "job_id": job_result.job_id,
        "host": job_result.host,
        "destination": _destination(params),
        "vms": vms,
        "warnings_job": list(job_result.warnings),
        "cleanup": job_result.cleanup.model_dump(mode="json"),
        "msg": _run_message(job_result, stored, _destination(params)),
    }
    if repository is not None or params["repository"]:
        result["repository_created"] = created
    if job_result.error:
        result["error"] = job_result.error
    return result


def _open_repository(params: dict[str, Any]) -> tuple[Repository, bool]:
    """Open the repository; with init_repository, create it first when there is none."""
    url = params["repository"]
    password = params["repository_password"]
    target: Any = _s3_target(params, url) if url.startswith("s3://") else LocalTarget(url)
    if params["init_repository"] and not Repository.exists(target):
        if password is None:
            raise ModuleError(
                "init_repository creates an encrypted repository: give repository_password "
                "(an unencrypted one is created with 'hyperv-backup init --no-encryption')."
            )
        return Repository.init(target, password), True
    return Repository.open(target, password), False


def _vm_result(v: Any) -> dict[str, Any]:
    return {
        "name": v.vm_name,
        "id": v.vm_id,
        "status": v.status.value,
        "consistency_requested": v.requested.value,
        "consistency_achieved": v.achieved.value if v.achieved else None,
        "consistency_reason": v.consistency_reason,
        "method": v.method.value if v.method else None,
        "capture_mode": v.capture_mode.value if v.capture_mode else None,
        "bytes": v.bytes,
        "files": len(v.files),
        "excluded": [e.model_dump(mode="json") for e in v.excluded],
        "retries": v.retries,
        "retry_reasons": list(v.retry_reasons),
        "replication_role": v.replication_role,
        "replication_suspended": v.replication_suspended,
        "location": v.location,
        "warnings": list(v.warnings),
        "error": v.error,
        "duration_seconds": round(v.duration_seconds, 3),
    }


def _run_message(job_result: Any, stored: list[Any], where: str) -> str:
    total = sum(v.bytes for v in stored)
    count = len(job_result.vms)
    msg = (
        f"Backed up {len(stored)} of {count} VM(s) from {job_result.host} "
        f"({_size(total)}) into {where}."
    )
    if job_result.error:
        msg += f" The job failed: {job_result.error}"
    failed = [v for v in job_result.vms if v.status.value != "success"]
    if failed:
        msg += " Failed: " + "; ".join(f"{v.vm_name}: {v.error}" for v in failed)
    warned = [f"{v.vm_name}: {w}" for v in job_result.vms for w in v.warnings]
    warned += list(job_result.warnings) + list(job_result.cleanup.errors)
    if warned:
        msg += " Needs attention: " + "; ".join(warned)
    return msg


def _failed(status: str, params: dict[str, Any]) -> bool:
    return status == "failed" or (status == "partial" and params["fail_on_partial"])


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


if __name__ == "__main__":
    main()
