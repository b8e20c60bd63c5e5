"""Command line: ``sis manager|m``, ``sis worker``, ``sis retry``, ``sis console|c``."""

from __future__ import annotations

import argparse
import errno
import glob
import os
import sys

from sisyphus import global_settings as gs

_DISK_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM}


def _manager(args: argparse.Namespace) -> int:
    from sisyphus import toolkit
    from sisyphus.graph import graph
    from sisyphus.loader import load_configs
    from sisyphus.manager import Manager

    toolkit._in_manager = True
    load_configs(args.config_files + args.configs)
    if args.ui:
        print("note: --ui (the real Sisyphus' curses interface) is not implemented; using the plain display")
    start = args.run
    if not start and sys.stdin.isatty():
        manager = Manager(graph, start=False)
        manager.run()
        answer = input("Start manager? (y/n) ").strip().lower()
        start = answer in ("y", "yes")
        if not start:
            return 0
    manager = Manager(
        graph,
        start=start,
        clear_errors=args.clear_errors,
        clear_interrupts=args.clear_interrupts,
        interactive=args.interactive,
    )
    if args.http_port is not None:
        port = manager.serve_http(args.http_port)
        print(f"status page: http://127.0.0.1:{port}/", flush=True)
    return manager.run()


def _worker(args: argparse.Namespace) -> int:
    from sisyphus.loader import add_import_paths
    from sisyphus.worker import run_worker

    os.environ["SIS_WORKER"] = "1"
    add_import_paths()
    return run_worker(
        args.job_dir,
        args.task,
        args.task_id,
        redirect_output=args.redirect_output,
        force_resume=args.force_resume,
    )


def _retry(args: argparse.Namespace) -> int:
    """Make failed and interrupted tasks rerun in place: error markers go, their logs are kept as
    ``log.*.error.NN`` / ``log.*.interrupted.NN``; finished tasks and their outputs stay."""
    import re

    from sisyphus.task import reset_task_id

    for path in args.jobs:
        job_dir = os.path.realpath(path)
        if not os.path.exists(os.path.join(job_dir, gs.JOB_SAVE)):
            print(f"{path}: not a job directory (no {gs.JOB_SAVE})", file=sys.stderr)
            return 2
        ids = set()
        for marker in glob.glob(os.path.join(job_dir, "error.*")) + glob.glob(os.path.join(job_dir, "log.*")):
            m = re.fullmatch(r"(?:error|log)\.(.+)\.(\d+)", os.path.basename(marker))
            if m:
                ids.add((m.group(1), int(m.group(2))))
        done: dict[str, int] = {"error": 0, "interrupted": 0}
        for task_name, task_id in sorted(ids):
            kind = reset_task_id(job_dir, task_name, task_id)
            if kind is None:
                continue
            done[kind] += 1
            submit_log = os.path.join(job_dir, f"submit_log.{task_name}")
            if os.path.exists(submit_log):
                os.unlink(submit_log)
        print(
            f"{job_dir}: cleared {done['error']} error marker(s), reset {done['interrupted']} interrupted task(s)"
        )
    return 0


def _console(args: argparse.Namespace) -> int:
    import code

    from sisyphus import tk, toolkit
    from sisyphus.loader import add_import_paths, load_configs

    toolkit._in_manager = True
    namespace: dict = {"tk": tk, "gs": gs, "config_files": args.config_files + args.configs}
    if args.load:  # --load JOB_DIR: the jobs, without loading configs (as the real console)
        add_import_paths()
        namespace["jobs"] = [tk.load_job(p) for p in args.load]
        for i, job in enumerate(namespace["jobs"]):
            print(f"jobs[{i}]: {job}")
    elif not args.skip_config:
        load_configs(args.config_files + args.configs)
    for command in args.commands:
        exec(command, namespace)
    if args.script or not sys.stdin.isatty():
        return 0
    code.interact(banner="sisyphus console: tk, gs in scope", local=namespace)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sis", description="Sisyphus-compatible workflow manager")
    parser.add_argument(
        "--log_level",
        type=int,
        default=20,
        help="logging level (10 debug, 20 info, 30 warnings, 50 critical)",
    )
    parser.add_argument(
        "--config", dest="config_files", action="append", default=[], help="a config file (repeatable)"
    )
    sub = parser.add_subparsers(dest="command_name", required=True)
    m = sub.add_parser("manager", aliases=["m"], help="run the graph of the given configs")
    m.add_argument("configs", nargs="*", help="config files (config/exp.py) or module.function")
    m.add_argument("-r", dest="run", action="store_true", help="start submitting without asking")
    m.add_argument("-co", dest="clear_errors", action="store_true", help="move errored jobs aside and rerun")
    m.add_argument(
        "-cio",
        dest="clear_interrupts",
        action="store_true",
        help="move non-resumable interrupted jobs aside and rerun",
    )
    m.add_argument(
        "-io",
        dest="ignore_once",
        action="store_true",
        help="do not ask about jobs in error (accepted for the real one's command line: this manager never asks)",
    )
    m.add_argument("-i", "--interactive", action="store_true", help="ask before submitting each task")
    m.add_argument(
        "--http", dest="http_port", type=int, default=None, help="serve a status page on this port"
    )
    m.add_argument("--ui", action="store_true", help="accepted; the curses interface is not implemented")
    m.set_defaults(func=_manager)
    w = sub.add_parser("worker", help="run one task of a job (started by engines)")
    w.add_argument("job_dir")
    w.add_argument("task")
    w.add_argument("task_id", type=int, nargs="?", default=1)
    w.add_argument("--engine", default=None)
    w.add_argument("--redirect_output", action="store_true")
    w.add_argument(
        "--force_resume",
        "--fr",
        action="store_true",
        help="run the task even if it failed (its error marker goes)",
    )
    w.set_defaults(func=_worker)
    r = sub.add_parser("retry", help="rerun failed and interrupted tasks of jobs in place")
    r.add_argument("jobs", nargs="+", help="job directories or alias links")
    r.set_defaults(func=_retry)
    c = sub.add_parser("console", aliases=["c"], help="Python console with tk after loading configs")
    c.add_argument("configs", nargs="*")
    c.add_argument(
        "--load", action="append", default=[], help="load this job directory (repeatable) into `jobs`"
    )
    c.add_argument("--skip_config", action="store_true", help="do not load the configs")
    c.add_argument("-c", dest="commands", action="append", default=[], help="run this command (repeatable)")
    c.add_argument(
        "-s", "--script", action="store_true", help="exit after the -c commands instead of opening a console"
    )
    c.set_defaults(func=_console)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    logging.basicConfig(format="[%(asctime)s] %(levelname)s: %(message)s", level=args.log_level)
    gs.load_settings(warn_unsupported=args.func is not _worker)  # once, by the manager, not per worker
    try:
        return args.func(args) or 0
    except OSError as e:
        if e.errno not in _DISK_ERRNOS:
            raise
        # a read-only, full or foreign work dir: one line that says which file and why, no traceback
        where = f" {e.filename}" if e.filename else f" in {os.path.abspath(gs.WORK_DIR)}"
        print(
            f"sis {args.command_name}: cannot write{where}: {e.strerror} "
            f"({errno.errorcode.get(e.errno, e.errno)}); make the work directory writable or free space, "
            f"then run again",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
