"""What an SMB status means for someone reading a host file, as a typed error.

The NT status codes are Windows' (MS-ERREF); Samba answers with the same ones.
"""

from __future__ import annotations

from hyperv_backup.errors import (
    HostFileNotFoundError,
    ReadAccessDeniedError,
    ShareNotFoundError,
    TransferError,
)

__all__ = ["translate_status"]

_OBJECT_NAME_NOT_FOUND = 0xC0000034
_OBJECT_PATH_NOT_FOUND = 0xC000003A
_OBJECT_NAME_INVALID = 0xC0000033
_ACCESS_DENIED = 0xC0000022
_SHARING_VIOLATION = 0xC0000043
_BAD_NETWORK_NAME = 0xC00000CC
_NETWORK_NAME_DELETED = 0xC00000C9
# smbclient asks for a DFS referral when a tree connect fails with BAD_NETWORK_NAME; a server
# without DFS then answers NOT_FOUND, which is how a missing share shows.
_NOT_FOUND = 0xC0000225
_FILE_IS_A_DIRECTORY = 0xC00000BA


def translate_status(status: int, what: str, username: str, admin_shares: bool) -> TransferError:
    """The error for NT status ``status`` met while ``what`` (e.g. "reading 'D:\\x' (UNC)")."""
    code = f"0x{status:08X}"
    if status in (_BAD_NETWORK_NAME, _NETWORK_NAME_DELETED, _NOT_FOUND):
        hint = (
            "The administrative shares (C$, D$ ...) may be turned off on the host "
            "(AutoShareServer=0) or blocked by policy: map the folder to a share of its own "
            "(shares={...}) or use a staging share."
            if admin_shares
            else "Check the share mapping, and that the share still exists on the host "
            "(Get-SmbShare); a staging share is removed when its backup ends."
        )
        return ShareNotFoundError(f"The SMB share does not exist while {what} ({code}). {hint}")
    if status in (_OBJECT_NAME_NOT_FOUND, _OBJECT_PATH_NOT_FOUND, _OBJECT_NAME_INVALID):
        return HostFileNotFoundError(
            f"No such file on the host while {what} ({code}): it may have been moved or "
            "deleted since the VM was listed, or the share maps to another folder."
        )
    if status == _ACCESS_DENIED:
        hint = (
            "Administrative shares need a member of the host's local Administrators group; a "
            "local (non-domain) account also needs remote UAC relaxed "
            "(LocalAccountTokenFilterPolicy=1)."
            if admin_shares
            else "Grant the account read access to the share (New-SmbShare -ReadAccess / "
            "Grant-SmbShareAccess) and to the folder (NTFS)."
        )
        return ReadAccessDeniedError(f"Access denied to {username!r} while {what}. {hint}")
    if status == _SHARING_VIOLATION:
        return TransferError(
            f"The file is open exclusively by another process on the host while {what} "
            f"({code}): a running VM's active disk cannot be read; read it from a checkpoint, "
            "an export or a shadow copy."
        )
    if status == _FILE_IS_A_DIRECTORY:
        return TransferError(f"A folder, not a file, while {what} ({code}).")
    return TransferError(f"The SMB server answered NT status {code} while {what}.")
