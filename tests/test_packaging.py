"""A wheel installed into a fresh virtualenv (not editable, run elsewhere) migrates, ingests and reports."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from tests.conftest import EXAMPLE_DUMPS, ROOT


def test_installed_wheel_migrates_ingests_and_reports(tmp_path, env):
    source = tmp_path / "source"  # setuptools writes build/ next to the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "data", "build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(source)],
        check=True, cwd=tmp_path, capture_output=True,
    )
    (wheel,) = wheels.glob("feedbot-*.whl")

    # A fresh virtualenv that sees the dependencies already installed here, but not this checkout.
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(fresh), "platbase": str(fresh)}))
    deps = Path(sysconfig.get_path("purelib"))
    (site / "feedbot-test-deps.pth").write_text(f"{deps}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )
    python = fresh / "bin" / "python"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dumps = elsewhere / "dumps"
    shutil.copytree(EXAMPLE_DUMPS, dumps)

    def feedbot(*args: str) -> str:
        code = "import sys; from feedbot.cli import main; sys.exit(main())"
        done = subprocess.run([str(python), "-c", code, *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = feedbot_location(python, elsewhere, env)
    assert where.is_relative_to(site), where
    feedbot("db", "upgrade")
    assert "354 new" in feedbot("ingest", str(dumps), "--date", "2026-03-20")
    status = feedbot("status")
    assert "354" in status


def feedbot_location(python: Path, cwd: Path, env: dict[str, str]) -> Path:
    done = subprocess.run([str(python), "-c", "import feedbot; print(feedbot.__file__)"], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())
