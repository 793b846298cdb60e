"""Benchmark: PhysioNet 2019 ingest (organsim, polars) against a plain pandas read-every-file loop.

Both run on the same machine in the same process, on the same 6,000-stay archive extracted to a
temporary directory; organsim also reads the .tar.gz directly. Each timing is the median of
``--repeats`` runs after one untimed warm-up (so every run reads from the page cache). The pandas
loop only reads and concatenates; organsim's ingest also validates, maps through the catalog,
nulls implausible values and builds the canonical Cohort, so the ratio understates the parsing
speed-up. MEDS export and re-import of the ingested cohort are timed too.

Usage::

    .venv/bin/python bench/ingest.py [--archive PATH] [--repeats 3] [--out bench/results/ingest.json]

Writes a JSON object with the timings (seconds), the ratio pandas / organsim, the counts, and the
machine (CPU count, load average at start, library versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import polars as pl

from organsim.data import read_meds, read_physionet2019, write_meds
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "physionet2019" / "training_setB_part.tar.gz"


def pandas_loop(directory: Path) -> pd.DataFrame:
    """The baseline: ``pd.read_csv`` on every file, a stay_id column, one ``pd.concat``."""
    frames = []
    for path in sorted(directory.rglob("*.psv")):
        frame = pd.read_csv(path, sep="|")
        frame["stay_id"] = int(path.stem[1:])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Warm up once, then time ``repeats`` runs; return (median, all times, last result)."""
    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.json")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"archive not found: {args.archive} (put ../shared beside the repository)")
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="organsim-bench-") as tmp:
        tmp = Path(tmp)
        with tarfile.open(args.archive) as archive:
            archive.extractall(tmp / "psv", filter="data")
        pandas_s, pandas_runs, frame = median_seconds(lambda: pandas_loop(tmp / "psv"), args.repeats)
        directory_s, directory_runs, cohort = median_seconds(lambda: read_physionet2019(tmp / "psv"), args.repeats)
        archive_s, archive_runs, _ = median_seconds(lambda: read_physionet2019(args.archive), args.repeats)
        write_s, _, _ = median_seconds(lambda: write_meds(cohort, tmp / "meds"), args.repeats)
        read_s, _, back = median_seconds(lambda: read_meds(tmp / "meds"), args.repeats)
    counts = cohort.counts()
    if not len(frame) == counts["hours"] == back.counts()["hours"]:
        raise SystemExit(f"the loaders disagree on the number of hours: pandas {len(frame)}, organsim "
                         f"{counts['hours']}, after MEDS {back.counts()['hours']}")
    result = {
        "benchmark": "PhysioNet 2019 ingest, 6,000-stay archive",
        "archive": str(args.archive),
        "repeats": args.repeats,
        "stays": counts["stays"],
        "hours": counts["hours"],
        "septic_stays": counts["septic_stays"],
        "pandas_read_csv_loop_s": round(pandas_s, 3),
        "organsim_ingest_directory_s": round(directory_s, 3),
        "organsim_ingest_tar_gz_s": round(archive_s, 3),
        "speedup_pandas_over_organsim_directory": round(pandas_s / directory_s, 2),
        "speedup_pandas_over_organsim_tar_gz": round(pandas_s / archive_s, 2),
        "meds_write_s": round(write_s, 3),
        "meds_read_s": round(read_s, 3),
        "runs_s": {
            "pandas_read_csv_loop": [round(t, 3) for t in pandas_runs],
            "organsim_ingest_directory": [round(t, 3) for t in directory_runs],
            "organsim_ingest_tar_gz": [round(t, 3) for t in archive_runs],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "python": platform.python_version(),
            "polars": pl.__version__,
            "pandas": pd.__version__,
        },
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
