"""The built wheel works outside the checkout: it carries its rules, templates and model.

Builds the wheel, installs it (without dependencies) into a fresh virtual environment
whose dependencies come from the test environment's site-packages, and runs ``intake``
from an empty folder, as a user who installed the package would. ``.ci/run`` does the
same with a full dependency install.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtualenv with the wheel built from this checkout."""
    base = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(base / "dist"), str(ROOT)], cwd=base)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((base / "dist").glob("intake_classifier-*.whl"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    done = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)], cwd=base)
    assert done.returncode == 0, done.stderr[-2000:]
    # Dependencies from the test environment; its editable install of intake is not
    # seen there, because .pth files in a folder added this way are not processed.
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base).stdout.strip()
    Path(purelib, "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return env_dir / "bin"


@pytest.fixture()
def elsewhere(tmp_path: Path) -> dict[str, str]:
    """An environment with no INTAKE_* settings, for a run from an empty folder."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}


def test_the_package_comes_from_the_wheel_not_the_checkout(installed: Path, tmp_path: Path, elsewhere) -> None:
    out = _run([str(installed / "python"), "-c", "import classifier, classifier.locations as l; "
                "print(classifier.__file__); print(l.bundled('rules')); print(l.bundled('models'))"],
               cwd=tmp_path, env=elsewhere)
    package, rules, models = out.stdout.split()
    assert "site-packages" in package and not package.startswith(str(ROOT))
    assert rules.endswith("classifier/bundled/rules") and models.endswith("classifier/bundled/models")


def test_classify_and_rules_check_from_an_empty_folder(installed: Path, tmp_path: Path, elsewhere) -> None:
    out = _run([str(installed / "intake"), "classify", "--json", "Our portal crm.acme.de is down since 7am, nobody can log in"],
               cwd=tmp_path, env=elsewhere)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["severity"] == "critical" and result["category"] == "product_error"
    assert "url" not in result["missing_info"] and result["suggested_reply"]

    check = _run([str(installed / "intake"), "rules", "check"], cwd=tmp_path, env=elsewhere)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "clauses: 42 of 42 covered" in check.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written where it was run


def test_version_names_the_bundled_rules_and_model(installed: Path, tmp_path: Path, elsewhere) -> None:
    out = _run([str(installed / "intake"), "--version"], cwd=tmp_path, env=elsewhere)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("intake-classifier ")
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text(encoding="utf-8"))
    assert lines[1].startswith("rules: digest ") and "bundled (" in lines[1] and "site-packages" in lines[1]
    assert f"sha256 {manifest['model_sha256'][:12]}" in lines[2] and "bundled (" in lines[2]


def test_exported_rules_are_editable_and_chosen_by_the_environment(installed: Path, tmp_path: Path, elsewhere) -> None:
    mine = tmp_path / "my-rules"
    export = _run([str(installed / "intake"), "rules", "export", str(mine)], cwd=tmp_path, env=elsewhere)
    assert export.returncode == 0, export.stderr
    assert (mine / "replies.yaml").exists() and (mine / "clauses" / "general.yaml").exists()
    # A support lead's edit: the critical acknowledgement's wording.
    replies = mine / "replies.yaml"
    replies.write_text(replies.read_text(encoding="utf-8").replace("Thank you", "Many thanks"), encoding="utf-8")
    env = {**elsewhere, "INTAKE_RULES": str(mine)}
    version = _run([str(installed / "intake"), "--version"], cwd=tmp_path, env=env)
    assert f"$INTAKE_RULES ({mine})" in version.stdout
    out = _run([str(installed / "intake"), "classify", "--json", "How do I add a custom field to deals?"], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "Many thanks" in json.loads(out.stdout)["suggested_reply"]
    again = _run([str(installed / "intake"), "rules", "export", str(mine)], cwd=tmp_path, env=elsewhere)
    assert again.returncode == 1 and "[E082]" in again.stderr  # never overwrites an edited copy


def test_train_without_out_refuses_to_write_into_the_package(installed: Path, tmp_path: Path, elsewhere) -> None:
    out = _run([str(installed / "intake"), "train", "--out", str(tmp_path / "mine")], cwd=tmp_path, env=elsewhere)
    assert out.returncode == 1 and "[E080]" in out.stderr
    out = _run([str(installed / "intake"), "train", "--data", str(ROOT / "data" / "examples.jsonl")], cwd=tmp_path, env=elsewhere)
    assert out.returncode == 1 and "[E081]" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_healthz_with_where_rules_and_model_came_from(installed: Path, tmp_path: Path, elsewhere) -> None:
    port = _free_port()
    env = {**elsewhere, "INTAKE_PORT": str(port)}  # the port from the environment, no flag
    server = subprocess.Popen([str(installed / "intake"), "serve"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None, server.stderr.read() if server.poll() is not None else "no answer in 90 s"
        assert health["status"] == "ok"
        assert health["rules"]["origin"] == "bundled" and "site-packages" in health["rules"]["path"]
        assert health["model"]["origin"] == "bundled" and health["model"]["sha256"]
        # the desk's templates, static files and migrations came with the wheel: the
        # store was created in the folder it runs in, and the login page is served
        base = f"http://127.0.0.1:{port}"
        login = httpx.get(base + "/desk", follow_redirects=True, timeout=30)
        assert login.status_code == 200 and "Log in to the desk" in login.text
        assert httpx.get(base + "/desk/static/desk.css", timeout=30).status_code == 200
        assert (tmp_path / "intake.db").exists()
        assert httpx.post(base + "/v1/classify", json={"text": "portal down"}, timeout=30).status_code == 401
        # no key configured: one was made and printed (before the server started); it opens the API
        first = [server.stderr.readline() for _ in range(2)]
        (key,) = re.findall(r"the API key of this run is (\S+)", "".join(first))
        answer = httpx.post(base + "/v1/classify", json={"text": "portal down"}, timeout=30,
                            headers={"authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and answer.json()["category"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(re.findall(r"the API key of this run is", "".join(first) + server.stderr.read())) == 1
