"""Assembles the GPU verification record (DESIGN.md "GPU verification") from a pytest
junit XML and a pytest-benchmark JSON, writes <date>-<gpu>.json and prints a summary."""
from __future__ import annotations

import argparse
import datetime
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from segsort_ext.buildinfo import csrc_digest


def test_counts(junit: Path) -> dict:
    if not junit.exists():
        return {"passed": 0, "failed": 0, "skipped": 0, "error": "no test report"}
    suites = ET.parse(junit).getroot()
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    failed = [case.get("classname", "") + "::" + case.get("name", "")
              for case in suite.iter("testcase") if case.find("failure") is not None or case.find("error") is not None]
    cuda_passed = sum(1 for case in suite.iter("testcase")
                      if "cuda" in case.get("name", "") and not list(case))
    return {"passed": total - failures - errors - skipped, "failed": failures + errors, "skipped": skipped,
            "cuda_passed": cuda_passed, "failed_tests": failed}


def bench_medians(bench: Path) -> dict:
    if not bench.exists():
        return {}
    data = json.loads(bench.read_text())
    return {b["fullname"].split("::", 1)[-1]: b["stats"]["median"] for b in data["benchmarks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", type=Path, required=True)
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    date = datetime.date.today().isoformat()
    record = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": date,
        "tests": test_counts(args.tests),
        "benchmarks": bench_medians(args.bench),
        "csrc_digest": csrc_digest(),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{date}-{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-').lower()}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")

    print(f"\n== summary: {device}, torch {record['torch']}, CUDA {record['cuda']}")
    t = record["tests"]
    print(f"tests: {t['passed']} passed ({t.get('cuda_passed', 0)} CUDA), {t['failed']} failed, {t['skipped']} skipped")
    for name in t.get("failed_tests", []):
        print(f"  FAILED {name}")
    print(f"{'benchmark':70s} {'median':>12s}")
    for name, seconds in sorted(record["benchmarks"].items()):
        print(f"{name:70s} {seconds * 1e3:10.3f} ms")
    print(f"wrote {path} (csrc digest {record['csrc_digest'][:12]})")


if __name__ == "__main__":
    main()
