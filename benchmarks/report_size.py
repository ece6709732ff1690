"""Size of one JSON report in format 1 (every check record repeats both environments) and in
format 2 (each environment once), measured on a real report in one run.

    pytest --persist-load=artifacts --persist-report=report.json
    python benchmarks/report_size.py report.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from pytest_persist.results.report import read_json_report, write_json_report


def main(path: str) -> None:
    environment, records = read_json_report(path)
    with tempfile.TemporaryDirectory() as tmp:
        v1 = Path(tmp) / "v1.json"
        v1_report = {
            "format": "pytest-persist-report",
            "format_version": 1,
            "environment": dict(environment),
            "records": [record.to_dict() for record in records],
        }  # what the format 1 writer wrote
        v1.write_text(json.dumps(v1_report, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        v2 = write_json_report(Path(tmp) / "v2.json", records, environment)
        n_environments = len(json.loads(v2.read_text())["environments"])
        same = [r.to_dict() for r in read_json_report(v1)[1]] == [
            r.to_dict() for r in read_json_report(v2)[1]
        ]
        size1, size2 = v1.stat().st_size, v2.stat().st_size
    print(f"{len(records)} records, {n_environments} environment(s)")
    print(f"format 1: {size1 / 1000:.1f} KB ({size1 / max(len(records), 1):.0f} B per record)")
    print(f"format 2: {size2 / 1000:.1f} KB ({size2 / max(len(records), 1):.0f} B per record)")
    print(f"format 2 / format 1: {size2 / size1:.2f}; read back identically: {same}")


if __name__ == "__main__":
    main(sys.argv[1])
