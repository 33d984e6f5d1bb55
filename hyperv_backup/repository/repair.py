"""Repair a damaged or lost index from the packs' own headers.

Every pack carries a sealed header listing its blobs, so the index can always be rebuilt:
the packs no readable index object names are read (their trailer and header only, two
range reads each), index objects are written for them, and then the unreadable index
objects are deleted — every pack they could have named is indexed again by then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hyperv_backup.errors import IntegrityError
from hyperv_backup.repository.index import write_index_objects
from hyperv_backup.repository.pack import (
    PACK_PREFIX,
    PackedBlob,
    fetch_pack_header,
    pack_id_of_key,
)
from hyperv_backup.repository.store import BlobStore

__all__ = ["IndexRepairReport", "repair_index"]

logger = logging.getLogger(__name__)


@dataclass
class IndexRepairReport:
    """What ``repair_index`` did."""

    packs_indexed: list[str] = field(default_factory=list)
    packs_unreadable: list[str] = field(default_factory=list)
    index_objects_written: list[str] = field(default_factory=list)
    index_objects_removed: list[str] = field(default_factory=list)


def repair_index(store: BlobStore) -> IndexRepairReport:
    """Index every pack no readable index object names; drop unreadable index objects."""
    report = IndexRepairReport()
    store.load_index()
    known = store.known_packs()
    found: dict[str, list[PackedBlob]] = {}
    for info in store.target.list(PACK_PREFIX):
        pack_id = pack_id_of_key(info.key)
        if pack_id is None or pack_id in known:
            continue
        try:
            found[pack_id] = fetch_pack_header(store.target, store.codec, pack_id, info.size)
        except (IntegrityError, FileNotFoundError) as err:
            logger.warning("pack %s cannot be indexed: %s", pack_id[:16], err)
            report.packs_unreadable.append(pack_id)
    report.packs_indexed = sorted(found)
    report.index_objects_written = write_index_objects(store.target, store.codec, found)
    for key in store.unreadable_index:
        store.target.delete(key)
        report.index_objects_removed.append(key)
    store.load_index()
    return report
