"""Measures the wall time of an inventory over PSRP against the simulator.

Not a test: prints figures. Run with ``.venv/bin/python bench/inventory_overhead.py``.
It reports, for the default scenario and for a generated 200-VM scenario:
- the time to open a session (TLS + auth + runspace pool),
- the round trip of the smallest script (get-host-info): the per-call PSRP overhead,
- the whole ``HyperVHost.inventory()`` call (get-host-info + get-inventory), median of runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from hyperv_backup import HyperVHost
from hyperv_backup.ps_scripts import SCRIPTS, GetHostInfoParams
from hyperv_backup.simulator import Simulator, load_scenario


def generated_scenario(count: int) -> dict[str, Any]:
    """``count`` VMs with two disks (one a differencing chain) and a few checkpoints each."""
    vms = []
    for i in range(count):
        name = f"vm{i:03d}"
        vms.append(
            {
                "name": name,
                "disks": [
                    {"file": {"path": rf"D:\VMs\{name}\os.vhdx", "size": "60 GiB"}},
                    {
                        "file": {
                            "path": rf"D:\VMs\{name}\data_1.avhdx",
                            "parent": {"path": rf"D:\VMs\{name}\data.vhdx", "size": "200 GiB"},
                            "size": "200 GiB",
                        }
                    },
                ],
                "checkpoints": [
                    {"name": "a"},
                    {"name": "b", "parent": "a"},
                    {"name": "c", "parent": "a"},
                ],
                "replication": {"mode": "Primary"} if i % 4 == 0 else {},
            }
        )
    return {"vms": vms}


def measure(label: str, scenario: Any, runs: int) -> None:
    with Simulator(load_scenario(scenario)) as sim:
        started = time.perf_counter()
        host = HyperVHost(sim.connection_settings())
        host.session.open()
        open_time = time.perf_counter() - started
        try:
            host.inventory()  # warm-up
            calls, inventories = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                host.runner.run(SCRIPTS["get-host-info"], GetHostInfoParams())
                calls.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                vms = host.inventory()
                inventories.append(time.perf_counter() - t0)
        finally:
            host.close()
    print(
        f"{label:>14}: {len(vms):4d} VMs | open session {open_time * 1000:7.1f} ms | "
        f"get-host-info round trip {statistics.median(calls) * 1000:6.1f} ms | "
        f"inventory {statistics.median(inventories) * 1000:7.1f} ms "
        f"(median of {runs}, {statistics.median(inventories) / len(vms) * 1000:.2f} ms/VM)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--vms", type=int, default=200)
    args = parser.parse_args()
    measure("default", None, args.runs)
    measure(f"generated {args.vms}", generated_scenario(args.vms), args.runs)


if __name__ == "__main__":
    main()
