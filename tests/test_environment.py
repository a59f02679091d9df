"""The environment record every JSON of figures carries, read on any machine."""

import datetime
import platform
import subprocess

from dynamic_shapes.environment import environment, git_commit
from scenario import HERE

# What the results pages read from every record (dynamic_shapes.results).
PROVENANCE = ("gpu", "driver", "tensorrt", "polygraphy", "python", "commit", "date")


def test_the_record_names_python_the_commit_and_the_date_and_every_version_it_can_read():
    record = environment()
    assert set(PROVENANCE) <= set(record)
    assert record["python"] == platform.python_version()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
    ).stdout.strip()
    assert record["commit"].split("+")[0] == head
    date = datetime.datetime.fromisoformat(record["date"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - date).total_seconds() < 60
    # Installed everywhere the tests run (requirements-dev.txt); None only where missing.
    assert record["numpy"] and record["polygraphy"] and record["tritonclient"]
    assert record["summary"].endswith(record["date"][:10])


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert git_commit(tmp_path) is None


def test_a_changed_result_or_results_page_is_no_change_of_the_code_but_a_changed_file_is(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path, check=True, capture_output=True,
        )  # fmt: skip

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.json").write_text("{}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("rendered")
    (tmp_path / "code.py").write_text("")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    commit = git_commit(tmp_path)
    assert commit and "+" not in commit
    (tmp_path / "results" / "run.json").write_text('{"measured": 1}')
    assert git_commit(tmp_path) == commit
    (tmp_path / "docs" / "results.md").write_text("rendered again")
    assert git_commit(tmp_path) == commit
    (tmp_path / "code.py").write_text("changed = True")
    assert git_commit(tmp_path) == commit + "+changes"
