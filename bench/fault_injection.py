"""Fault injection: ``kill -9`` random workers of ``sis manager config/tiny.py -r`` (at least ``--kills``
times), rerun the manager as a user would (``-co -cio`` once a killed non-resumable task blocks it) until
every target is done, then compare every registered output with an uninterrupted run.

Also checks, after every kill, that no process of the killed task survives (the engine owns the task's
process tree) and, at the end, that no task ever ran twice at once (two ``=== sisyphus worker`` starts of
a task id whose runs overlapped in time cannot be told from the logs, so this counts leftovers instead).

    python bench/fault_injection.py --kills 20 --out /tmp/fault_injection

Prints a summary and writes ``summary.json`` into ``--out``; exit status 0 when the outputs are
identical and no process of a killed task survived. Takes a while on a loaded machine (two tiny runs).
"""

from __future__ import annotations

import argparse
import filecmp
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sisyphus.process_tree import OWNER_ENV, find_task_processes  # noqa: E402


def make_project(root: Path) -> Path:
    root.mkdir(parents=True)
    os.symlink(REPO / "config", root / "config")
    shutil.copy(REPO / "settings.py", root / "settings.py")
    return root


def manager(root: Path, *flags: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sisyphus", "m", "config/tiny.py", "-r", *flags],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def workers(root: Path) -> list[tuple[int, str, float]]:
    """(pid, owner token, age in s) of the live workers of the project in ``root``."""
    work = str(root / "work")
    found = []
    boot = time.time() - float(open("/proc/uptime").read().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
            stat = open(f"/proc/{entry}/stat", "rb").read()
        except OSError:
            continue
        if b"worker" not in cmd or not any(c.decode(errors="replace").startswith(work) for c in cmd):
            continue
        token = next((v.decode().split("=", 1)[1] for v in env if v.startswith(f"{OWNER_ENV}=".encode())), "")
        started = boot + int(stat[stat.rfind(b")") + 2 :].split()[19]) / ticks
        found.append((int(entry), token, time.time() - started))
    return found


def run_with_faults(root: Path, kills: int, seed: int, log_path: Path) -> dict:
    rng = random.Random(seed)
    done_kills: list[dict] = []
    survivors: list[dict] = []
    runs = []
    with open(log_path, "w") as log:
        flags: tuple[str, ...] = ()
        for attempt in range(50):
            proc = manager(root, *flags, log=log)
            next_kill = time.time() + rng.uniform(1, 4)
            while proc.poll() is None:
                time.sleep(0.2)
                if len(done_kills) >= kills or time.time() < next_kill:
                    continue
                candidates = [w for w in workers(root) if w[2] > 0.5 and w[1]]
                if not candidates:
                    continue
                pid, token, age = rng.choice(candidates)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                task = token.split("#", 1)[0]
                done_kills.append({"pid": pid, "task": task, "age_s": round(age, 1), "t": time.time()})
                print(f"kill -9 {pid} ({os.path.relpath(task, root)}, running {age:.1f} s)", flush=True)
                deadline = time.time() + 15
                while (left := find_task_processes(token)) and time.time() < deadline:
                    time.sleep(0.2)
                if left:
                    survivors.append({"task": task, "pids": left})
                    print(f"  SURVIVED: {left}", flush=True)
                next_kill = time.time() + rng.uniform(1, 4)
            runs.append({"flags": list(flags), "rc": proc.returncode})
            print(f"manager run {attempt + 1} {' '.join(flags)} exited {proc.returncode}", flush=True)
            if proc.returncode == 0:
                break
            flags = ("-co", "-cio")  # what a user does after an interrupted non-resumable task
    return {"kills": done_kills, "survivors": survivors, "manager_runs": runs}


def _normalized(path: Path, root: Path) -> bytes:
    """A file's content without what differs between two identical runs in other directories: gzip
    headers (mtime), the project root in paths (and the width of sclite's table columns that follows
    from it), RETURNN's ``:meta:`` entries (times) in learning-rate files."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    data = data.replace(str(root).encode(), b"<ROOT>")
    if path.name.startswith("sclite."):  # sclite sizes its tables' columns to the (root's) path length
        data = re.sub(rb"[ \t\-=]+", b" ", data)
    if path.name == "learning_rates":
        data = b"\n".join(line for line in data.split(b"\n") if b"':meta:" not in line)
    return data


def compare_outputs(ref: Path, test: Path) -> dict:
    """Every file under ``output/`` (links followed): identical bytes, identical after normalisation
    (``_normalized``), different, or missing."""
    same, normalized_same, different, missing = [], [], [], []
    for dirpath, _, files in os.walk(ref / "output", followlinks=True):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), ref / "output")
            other = test / "output" / rel
            if not other.exists():
                missing.append(rel)
            elif filecmp.cmp(ref / "output" / rel, other, shallow=False):
                same.append(rel)
            elif _normalized(ref / "output" / rel, ref) == _normalized(other, test):
                normalized_same.append(rel)
            else:
                different.append(rel)
    return {
        "identical": len(same),
        "identical_after_normalization": normalized_same,
        "different": sorted(different),
        "missing": missing,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fault_injection"))
    parser.add_argument("--reference", type=Path, help="an earlier uninterrupted project root to reuse")
    parser.add_argument(
        "--copy-jobs",
        nargs="*",
        default=[],
        metavar="CLASS",
        help="finished jobs of these classes (e.g. DemoNBestJob, not reproducible even without faults) are "
        "copied from --reference into the faulted project before it starts, so that what depends on them can "
        "be compared",
    )
    parser.add_argument(
        "--compare-only",
        nargs=2,
        type=Path,
        metavar=("REFERENCE", "FAULTED"),
        help="only compare two project roots",
    )
    args = parser.parse_args()
    if args.compare_only:
        cmp = compare_outputs(*args.compare_only)
        print(json.dumps(cmp, indent=1))
        return 0 if not cmp["different"] and not cmp["missing"] else 1
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    t0 = time.time()
    faulted = make_project(args.out / "faulted")
    if args.copy_jobs:
        if args.reference is None:
            parser.error("--copy-jobs needs --reference")
        for name in args.copy_jobs:
            for src in sorted((args.reference / "work").glob(f"**/{name}.*")):
                if ".cleared." in src.name or not (src / "output").is_dir():
                    continue
                dst = faulted / "work" / src.relative_to(args.reference / "work")
                shutil.copytree(src, dst, symlinks=True)
                print(f"copied {src.relative_to(args.reference)} from the reference", flush=True)
    result = run_with_faults(faulted, args.kills, args.seed, args.out / "faulted_manager.log")
    t1 = time.time()
    ref = args.reference
    if ref is None:
        ref = make_project(args.out / "reference")
        with open(args.out / "reference_manager.log", "w") as log:
            rc = manager(ref, log=log).wait()
        print(f"reference run exited {rc}", flush=True)
    t2 = time.time()
    result["comparison"] = compare_outputs(ref, faulted)
    result["seconds"] = {"faulted": round(t1 - t0), "reference": round(t2 - t1)}
    (args.out / "summary.json").write_text(json.dumps(result, indent=1))
    cmp = result["comparison"]
    ok = (
        len(result["kills"]) >= args.kills
        and not result["survivors"]
        and result["manager_runs"][-1]["rc"] == 0
        and not cmp["different"]
        and not cmp["missing"]
        and cmp["identical"] > 0
    )
    print(
        f"{len(result['kills'])} kills, {len(result['survivors'])} with surviving processes, "
        f"{len(result['manager_runs'])} manager run(s) (last exit {result['manager_runs'][-1]['rc']}); "
        f"outputs: {cmp['identical']} identical, {len(cmp['identical_after_normalization'])} identical after "
        f"normalisation, different {cmp['different']}, missing {cmp['missing']}; "
        f"{result['seconds']} -> {'OK' if ok else 'FAILED'}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
