"""Where backups are stored: one small protocol, a local directory and S3."""

from __future__ import annotations

from hyperv_backup.targets.base import ObjectInfo, Target, TargetCapabilities
from hyperv_backup.targets.local import LocalTarget
from hyperv_backup.targets.s3 import S3Target
from hyperv_backup.targets.settings import LocalSettings, S3Settings, TargetSettings, open_target

__all__ = [
    "LocalSettings",
    "LocalTarget",
    "ObjectInfo",
    "S3Settings",
    "S3Target",
    "Target",
    "TargetCapabilities",
    "TargetSettings",
    "open_target",
]
