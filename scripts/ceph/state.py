#!/usr/bin/env python3
"""Summarise `ceph status -f json` (read from stdin) for scripts/ceph.sh.

    ceph status -f json | python3 scripts/ceph/state.py EXPECTED_OSDS

Prints one line, e.g. "HEALTH_OK osds=3 up=3 in=3 pgs=9/9 active+clean checks=-",
and exits 0 when the cluster is settled: HEALTH_OK, EXPECTED_OSDS OSDs all up and in,
and every PG active+clean (HEALTH_OK alone comes before the PGs are clean, and a
cluster with no OSDs at all reports HEALTH_OK too). Exits 1 otherwise, 2 on bad input.
"""
import json
import sys


def main() -> int:
    expected = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    raw = sys.stdin.read()
    try:
        status = json.loads(raw)  # the CLI starts its JSON with a newline; json copes
    except ValueError:
        print("unparsable: " + raw.strip().replace("\n", " ")[:200])
        return 2
    health = status.get("health", {})
    osdmap = status.get("osdmap", {})
    osdmap = osdmap.get("osdmap", osdmap)  # nested before Octopus, flat after
    pgmap = status.get("pgmap", {})
    total = int(osdmap.get("num_osds", 0))
    up = int(osdmap.get("num_up_osds", 0))
    inn = int(osdmap.get("num_in_osds", 0))
    pgs = int(pgmap.get("num_pgs", 0))
    clean = sum(
        int(s.get("count", 0))
        for s in pgmap.get("pgs_by_state", [])
        if s.get("state_name") == "active+clean"
    )
    checks = ",".join(sorted(health.get("checks", {}))) or "-"
    state = health.get("status", "?")
    print(f"{state} osds={total} up={up} in={inn} pgs={clean}/{pgs} active+clean checks={checks}")
    settled = (
        state == "HEALTH_OK"
        and total == expected
        and up == expected
        and inn == expected
        and pgs > 0
        and clean == pgs
    )
    return 0 if settled else 1


if __name__ == "__main__":
    sys.exit(main())
