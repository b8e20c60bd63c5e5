"""Compatibility with the real Sisyphus API as i6_core uses it, the finished.tar.gz cleanup, job.save
and the manager's status page; real `sis` processes, no mocks."""

from __future__ import annotations

import glob
import gzip
import json
import os
import pickle
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from sisyphus import tk
from sisyphus.delayed_ops import DelayedFallback, DelayedFormat, DelayedFunction
from sisyphus.hash import short_hash
from tests.sis_project import SisProject

I6_LIKE = Path(__file__).parent / "i6_like"

SETTINGS = """
from sisyphus.engine import EngineSelector
from sisyphus.localengine import LocalEngine
WAIT_PERIOD_BETWEEN_CHECKS = 1
JOB_CLEANER_INTERVAL = 0
def file_caching(path):
    import os
    with open(os.environ["CACHE_LOG"], "a") as f:
        f.write(path + "\\n")
    return path
def engine():
    return EngineSelector({"short": LocalEngine(cpus=1), "long": LocalEngine(cpus=2)}, "long")
"""

CONFIG = """
from sisyphus import tk
from sisyphus.delayed_ops import DelayedFormat
from recipe.i6_like import ConfigJob, CorpusJob, HeadJob, rel_path

def py():
    corpus = CorpusJob(rel_path("data.txt", cached=True), prefix="l")
    head = HeadJob(corpus.out_text, corpus.out_num_lines - 2)
    config = ConfigJob({"corpus": corpus.out_text, "n": corpus.out_num_lines,
                        "name": DelayedFormat("{}-{}", "head", corpus.out_num_lines)})
    tk.register_output("head.txt", head.out)
    tk.register_output("config.py", config.out_config)
"""


class CompatProject(SisProject):
    def env(self) -> dict[str, str]:
        env = super().env()
        env["CACHE_LOG"] = str(self.root / "cache.log")
        return env


@pytest.fixture
def project(tmp_path: Path) -> CompatProject:
    proj = CompatProject.create(tmp_path / "project", SETTINGS)
    shutil.copytree(I6_LIKE, proj.root / "recipe" / "i6_like")
    proj.write_config(CONFIG)
    return proj


def _job_dirs(root: Path) -> list[str]:
    return sorted(glob.glob(str(root / "work" / "i6_like" / "*")))


def test_i6_core_shaped_jobs_run_and_clean_up(project):
    proc = project.sis("m", "config/exp.py", "-r", check=True)
    assert "All targets are done." in proc.stdout
    root = project.root
    assert (root / "output" / "head.txt").read_text() == "l one\nl two\n"  # 4 lines - 2
    config = (root / "output" / "config.py").read_text()
    corpus_out = glob.glob(str(root / "work/i6_like/CorpusJob.*/output/corpus.txt"))[0]
    assert f"corpus = {corpus_out!r}" in config  # a Path is written as its path string
    assert "n = 4\n" in config and "name = 'head-4'\n" in config
    # gs.file_caching was called for the cached input inside the worker, not for the job's own output
    assert (root / "cache.log").read_text().splitlines() == [str(root / "recipe/i6_like/data.txt")]

    # the auto-cleanup (on by default): work/ removed, logs/markers/job.save packed, outputs kept
    dirs = _job_dirs(root)
    assert len(dirs) == 3
    for d in dirs:
        assert sorted(os.listdir(d)) == ["finished.tar.gz", "info", "input", "output"], d
        with tarfile.open(os.path.join(d, "finished.tar.gz")) as tar:
            names = set(tar.getnames())
        assert {"job.save", "finished", "log.run.1", "finished.run.1", "submit_log.run"} <= names
    # a new manager sees every job as finished and runs nothing
    again = project.sis("m", "config/exp.py", "-r", check=True)
    assert "finished(3)" in again.stdout and "All targets are done." in again.stdout
    assert "runnable" not in again.stdout and "queue" not in again.stdout
    for d in dirs:
        assert sorted(os.listdir(d)) == ["finished.tar.gz", "info", "input", "output"]
    # the console loads a cleaned-up job from its finished.tar.gz (sis c --load JOB -c ... -s)
    out = project.sis("c", "--load", dirs[0], "-c", "print('ID', jobs[0].job_id())", "-s", check=True)
    assert "ID i6_like/" in out.stdout


def test_cleanup_keeps_what_is_needed_when_switched_off(project):
    settings = project.root / "settings.py"
    settings.write_text(settings.read_text() + "JOB_AUTO_CLEANUP = False\n")
    project.sis("m", "config/exp.py", "-r", check=True)
    for d in _job_dirs(project.root):
        assert not os.path.exists(os.path.join(d, "finished.tar.gz"))
        assert os.path.exists(os.path.join(d, "job.save")) and os.path.isdir(os.path.join(d, "work"))


def test_job_save_has_the_real_sisyphus_attributes(project):
    settings = project.root / "settings.py"
    settings.write_text(settings.read_text() + "JOB_AUTO_CLEANUP = False\n")
    project.sis("m", "config/exp.py", "-r", check=True)
    corpus_dir = glob.glob(str(project.root / "work/i6_like/CorpusJob.*"))[0]
    script = (
        "import gzip, pickle, sys\n"
        f"job = pickle.load(gzip.open({os.path.join(corpus_dir, 'job.save')!r}))\n"
        "print(sorted(k for k in vars(job) if k.startswith('_sis_')))\n"
        "print(type(job._sis_environment).__module__, type(job._sis_environment).__name__)\n"
        "print(job._sis_id_cache, job.get_vis_name())\n"
        "print([p.path for p in job._sis_inputs], [p.creator for p in job._sis_inputs])\n"
    )
    out = subprocess.run(
        [os.sys.executable, "-c", script], cwd=project.root, env=project.env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    attrs = eval(lines[0])
    # what the real worker reads from a job.save
    for key in (
        "_sis_id_cache",
        "_sis_inputs",
        "_sis_outputs",
        "_sis_kwargs",
        "_sis_task_rqmt_overwrite",
        "_sis_environment",
        "_sis_quiet",
        "_sis_tags",
        "_sis_aliases",
        "_sis_vis_name",
        "_sis_output_dirs",
        "_sis_hold_job",
        "_sis_keep_value",
    ):
        assert key in attrs, key
    assert "_sis_task_cache" not in attrs
    assert lines[1] == "sisyphus.tools EnvironmentModifier"
    assert lines[2].startswith("i6_like/CorpusJob.") and lines[2].endswith("Corpus l")
    assert (
        lines[3] == "['recipe/i6_like/data.txt'] [None]"
    )  # an input: relative to the base dir, as the real one


def test_status_page_over_http(project):
    """`sis m --http PORT` serves the state of the running manager (fetched with urllib)."""
    slow = project.write_config(
        """
        from sisyphus import tk
        from recipe.toy import SleepJob
        def py():
            job = SleepJob("slow", sleep=30)
            job.set_vis_name("a slow one")
            tk.register_output("slow.txt", job.out)
        """,
        name="slow.py",
    )
    manager = project.sis_background("m", slow, "-r", "--http", "0")
    try:
        port = None
        for line in manager.stdout:
            m = re.search(r"status page: http://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
        assert port is not None
        deadline = time.time() + 60
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10) as r:
                assert r.headers["Content-Type"] == "application/json"
                data = json.loads(r.read())
            states = {j["id"].split(".")[0]: j for j in data["jobs"]}
            if states.get("toy/SleepJob", {}).get("state") == "running" or time.time() > deadline:
                break
            time.sleep(0.5)
        job = states["toy/SleepJob"]
        assert job["state"] == "running" and job["vis_name"] == "a slow one" and job["task"] == "run"
        assert data["summary"] == {"running": 1}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            page = r.read().decode()
        assert "a slow one" in page and "running" in page and job["id"] in page
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=10)
    finally:
        manager.kill()
        manager.communicate(timeout=30)


def test_delayed_ops_paths_and_variables(tmp_path, fresh_graph):
    var_file = tmp_path / "v"
    var = tk.Variable(str(var_file))
    assert not var.is_set()
    fmt = DelayedFormat("n={} p={}", var + 1, tk.Path("a/b.txt"))
    assert not fmt.is_set()
    assert var.fallback(7).get() == 7 and (var * 2).fallback("x").get() == "x"
    var.set(4)
    assert not fmt.is_set()  # the input file does not exist yet
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.txt").write_text("")
    assert fmt.is_set() and fmt.get() == f"n=5 p={tk.Path('a/b.txt').get_path()}"
    assert (2**var).get() == 16 and (var // 3).get() == 1
    assert DelayedFunction(var, _twice).get() == 8
    assert tk.Path("x.txt").format().get() == tk.Path("x.txt").get_path()
    assert tk.Path("x").rformat("<{}>").get() == f"<{tk.Path('x').get_path()}>"
    assert (tk.Path("dir") + "/f").get() == tk.Path("dir").get_path() + "/f"
    assert isinstance(DelayedFallback(var, 0), tk.DelayedBase) and isinstance(var, tk.DelayedBase)
    with pytest.raises(ValueError):
        var.function(lambda x: x)
    # hashes: a delayed op is hashed by its class name and attributes, as in the real Sisyphus
    assert short_hash(DelayedFormat("{}", 1)) == short_hash(DelayedFormat("{}", 1))
    assert short_hash(DelayedFormat("{}", 1)) != short_hash(DelayedFormat("{}", 2))
    assert short_hash(tk.Delayed(3)) == short_hash(3)


def _twice(x):
    return 2 * x


def test_path_api(tmp_path, fresh_graph):
    f = tmp_path / "t.txt.gz"
    with gzip.open(f, "wt") as g:
        g.write("a\nb\n")
    p = tk.Path(str(f))
    assert tk.is_path(p) and not tk.is_path(str(f)) and isinstance(p, tk.AbstractPath)
    assert p.get() == p.get_path() == str(p) == os.fspath(p) == p.get_cached_path()
    with pytest.warns(DeprecationWarning):
        assert p.size() == os.path.getsize(f)
    with pytest.warns(DeprecationWarning):
        assert p.estimate_text_size() == int(os.path.getsize(f) * 3.5)
    c = p.copy()
    assert c == p and c is not p and c.hash_overwrite is None
    h = tk.Path("a", hash_overwrite="x/a").join_right("b")
    assert h.path == "a/b" and h.hash_overwrite == (None, "x/a/b")
    assert repr(p) == f"<Path {p.get_path()}>"
    assert pickle.loads(pickle.dumps(p)) == p


def test_setup_path_of_a_dotted_package_as_the_real_sisyphus(tmp_path, fresh_graph, monkeypatch):
    pkg = tmp_path / "recipe" / "lm" / "data"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "recipe", tmp_path / "recipe" / "lm", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "x.txt").write_text("x")
    monkeypatch.syspath_prepend(str(tmp_path / "recipe"))  # the "recipe/" import path
    rel = tk.setup_path("lm.data")
    p = rel("x.txt")
    assert os.path.exists(p.get_path()) and p.get_path() == str(pkg / "x.txt")
    # hash as the real RelPath: hash_overwrite "<package as a path>/<file>"
    assert p.hash_overwrite == (None, "lm/data/x.txt")
    assert short_hash(p) == short_hash(tk.Path("elsewhere", hash_overwrite="lm/data/x.txt"))


def test_sh_as_in_sisyphus(fresh_graph):
    from tests.core.golden_jobs import EchoJob  # any job: sh formats with the job's attributes

    job = EchoJob(1)
    assert job.sh("echo {value} {x}", True, x="y") == "1 y\n"
    assert job.sh("echo hi", capture_output=True) == "hi\n"
    assert job.sh("true") is None
    assert job.sh("exit 3", except_return_codes=(0, 3)) is None
    with pytest.raises(subprocess.CalledProcessError):
        job.sh("false | cat")  # pipefail


def test_register_callback_and_export(fresh_graph, tmp_path):
    from sisyphus.graph import graph

    calls = []
    f = tmp_path / "in.txt"
    tk.register_callback(calls.append, tk.Path(str(f)))
    graph.update_targets()
    assert calls == []
    f.write_text("")
    graph.update_targets()
    graph.update_targets()
    assert len(calls) == 1
    tk.dump({"a": tk.Path("p")}, str(tmp_path / "d" / "obj.gz"))
    assert tk.load_file(str(tmp_path / "d" / "obj.gz"))["a"].get_path() == tk.Path("p").get_path()


def test_unreadable_job_save_names_the_cause(tmp_path, fresh_graph):
    from sisyphus.job import ForeignJobSave, load_job

    job_dir = tmp_path / "work" / "x" / "Job.abc"
    job_dir.mkdir(parents=True)
    with gzip.open(job_dir / "job.save", "wb") as f:
        f.write(b"csisyphus.block\nBlock\n)\x81.")  # a class of the real Sisyphus that this core lacks
    with pytest.raises(ForeignJobSave, match=r"sisyphus\.block.*another workflow core"):
        load_job(str(job_dir))
