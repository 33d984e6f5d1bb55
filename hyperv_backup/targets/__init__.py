"""Where backups are stored: one small protocol, a local directory and S3."""

from __future__ import annotations

from hyperv_backup.targets.base import ObjectInfo, Target, TargetCapabilities
from hyperv_backup.targets.local import LocalTarget

__all__ = ["LocalTarget", "ObjectInfo", "Target", "TargetCapabilities"]
