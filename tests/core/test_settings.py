"""Settings files: what the core reads, and what it names as having no effect."""

from __future__ import annotations

import glob
import os


def test_settings_of_the_real_sisyphus_that_have_no_effect_are_named(sis_project):
    settings = sis_project.root / "settings.py"
    settings.write_text(settings.read_text() + "TEAM_SHARE_DIR = '/nowhere'\nJOB_USE_TAGS_IN_PATH = False\n")
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import SleepJob
        def py():
            tk.register_output("a.txt", SleepJob("a", sleep=0).out)
    """)
    proc = sis_project.sis("m", cfg, "-r", check=True)
    assert "sets JOB_USE_TAGS_IN_PATH, TEAM_SHARE_DIR: setting(s) of the real Sisyphus" in proc.stderr
    job_dir = glob.glob(str(sis_project.root / "work" / "toy" / "SleepJob.*"))[0]
    for log in ("log.run.1", "engine/run.1.local.log"):  # the manager warns, not every worker
        assert "real Sisyphus" not in open(os.path.join(job_dir, log)).read()
