"""docs/deploying.md, "Deploying to Cloud Run", followed end to end against the emulators as far as
they reach.

Every command, environment variable name, path, method and header comes from that page's own
text (and the Dockerfile's CMD, and slack-manifest.yaml's URLs), so this test fails when they
drift apart from what the code does:

- the emulators: `python -m bot emulators` (the page's last line), its printed environment;
- step 4: the schema job's `--command`/`--args` on a fresh database, with the job's secrets only;
- step 5: `serve` (the image's CMD) with exactly the `--set-secrets` and `--set-env-vars` names,
  plus what Cloud Run sets (PORT, K_SERVICE) and the emulators' environment;
- step 6: the Cloud Scheduler job's method, path and header on /tasks/tick;
- step 7: the alert webhook URL, with its token;
- step 8: `python -m bot doctor` with the same environment: clean;
- step 1: one signed slash command to the manifest's URL, answered through Slack.

What cannot run offline (gcloud, IAM, Secret Manager, Cloud Scheduler, Cloud SQL's socket) is
named on the deploy page and not tested here.

With ``RUNBACK_TEST_IMAGE`` set to a built image (e.g. ``localhost/runback:walkthrough``) and
buildah installed, the job, serve and doctor run inside that image instead (opt-in:
``scripts/container-walkthrough.sh`` builds it and runs this test).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from dockerfile_parse import DockerfileParser

from bot.sandbox.slack_payloads import signed_headers, slash_command
from tests.db import BACKENDS, empty_database
from tests.helpers import free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
DEPLOYING = (REPO / "docs" / "deploying.md").read_text()
PROJECT = "runback-sandbox"  # the shipped app.yaml's project stands for PROJECT
SLACK_TOKEN = "xoxb-sandbox"  # the Slack emulator's bot token
IMAGE = os.environ.get("RUNBACK_TEST_IMAGE", "")
BUILDAH = ["buildah", "--storage-driver", "vfs"]


# -- what docs/deploying.md says ------------------------------------------------------------------


def deploy_section() -> str:
    """The whole page: its steps and the doctor."""
    start = DEPLOYING.index("# Deploying to Cloud Run")
    return DEPLOYING[start:]


def shell_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", deploy_section(), re.DOTALL)


def command(starting: str) -> list[str]:
    """The page's shell command that starts with ``starting``, as words (continuations joined)."""
    found = [b for b in shell_blocks() if b.strip().startswith(starting)]
    assert len(found) == 1, f"one `{starting}` block in docs/deploying.md"
    return shlex.split(found[0].replace("\\\n", " "))


def flags(words: list[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs (a flag without a value maps to "")."""
    found: dict[str, str] = {}
    for index, word in enumerate(words):
        if not word.startswith("--"):
            continue
        name, _, value = word.partition("=")
        following = words[index + 1] if index + 1 < len(words) else "--"
        found[name] = value or ("" if following.startswith("--") else following)
    return found


def pairs(value: str) -> dict[str, str]:
    """gcloud's ``KEY=VALUE,KEY=VALUE``."""
    return dict(item.split("=", 1) for item in value.split(","))


@dataclass(frozen=True)
class Deploy:
    job_argv: list[str]  # the schema job: --command and --args
    job_secrets: list[str]
    secrets: list[str]  # serve's --set-secrets names
    env_vars: dict[str, str]  # serve's --set-env-vars
    tick_method: str
    tick_path: str
    tick_header: tuple[str, str]  # name, value with TOKEN for the secret
    alert_path: str  # with ?token=TOKEN
    serve_argv: list[str]  # the image's CMD


def read_deploy() -> Deploy:
    job = flags(command("gcloud run jobs deploy"))
    serve = flags(command("gcloud run deploy"))
    scheduler = flags(command("gcloud scheduler jobs create http"))
    header_name, header_value = scheduler["--headers"].split("=", 1)
    webhook = r"https://RUNBACK_URL(/alerts/monitoring\?token=)RUNBACK_ALERT_TOKEN"
    alert = re.search(webhook, DEPLOYING)
    assert alert, "step 7 gives the alert webhook's URL"
    cmd = [i["value"] for i in DockerfileParser(path=str(REPO / "Dockerfile")).structure]
    return Deploy(
        job_argv=[job["--command"], *job["--args"].split(",")],
        job_secrets=list(pairs(job["--set-secrets"])),
        secrets=list(pairs(serve["--set-secrets"])),
        env_vars=pairs(serve.get("--set-env-vars", "")) if serve.get("--set-env-vars") else {},
        tick_method=scheduler["--http-method"],
        tick_path=urlsplit(scheduler["--uri"]).path,
        tick_header=(header_name, re.sub(r"\$\(gcloud secrets[^)]*\)", "TOKEN", header_value)),
        alert_path=alert.group(1) + "TOKEN",
        serve_argv=json.loads(next(v for v in reversed(cmd) if v.startswith("[") and "serve" in v)),
    )


def manifest_command_path(name: str) -> str:
    manifest = yaml.safe_load((REPO / "slack-manifest.yaml").read_text())
    [url] = [c["url"] for c in manifest["features"]["slash_commands"] if c["command"] == name]
    assert url.startswith("https://RUNBACK_URL/")
    return urlsplit(url).path


def test_the_readme_says_what_this_walkthrough_follows() -> None:
    deploy = read_deploy()
    assert deploy.job_argv == ["python", "-m", "bot", "db", "upgrade"]
    assert deploy.job_secrets == ["DATABASE_URL"]
    assert set(deploy.secrets) == {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "RUNBACK_ALERT_TOKEN",
        "RUNBACK_TICK_TOKEN",
        "RUNBACK_CI_TOKEN",
        "DATABASE_URL",
    }
    assert deploy.env_vars == {"GOOGLE_CLOUD_PROJECT": "PROJECT"}
    assert (deploy.tick_method, deploy.tick_path) == ("POST", "/tasks/tick")
    assert deploy.tick_header == ("Authorization", "Bearer TOKEN")
    assert deploy.serve_argv == ["python", "-m", "bot", "serve"]
    assert "python -m bot emulators" in deploy_section()


# -- how the processes run: here, or inside the built image ---------------------------------------


class Runner:
    """Runs ``python -m bot ...`` with exactly the given environment (plus PATH)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder  # where the SQLite database lives
        self.container = ""
        if IMAGE:  # the image runs as an unprivileged user: it needs a folder it may write in
            self.folder = Path(tempfile.mkdtemp(prefix="runback-walkthrough-"))
            self.folder.chmod(0o777)
            made = subprocess.run(
                [*BUILDAH, "from", "--pull-never", IMAGE], capture_output=True, text=True
            )
            assert made.returncode == 0, made.stderr
            self.container = made.stdout.strip()

    def argv(self, words: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if not self.container:
            python = [sys.executable] if words[0] == "python" else [words[0]]
            return [*python, *words[1:]], {**base, **env}
        settings = [f"--env={name}={value}" for name, value in env.items()]
        mount = f"--volume={self.folder}:{self.folder}"
        run = [*BUILDAH, "run", "--isolation", "chroot", mount, *settings, self.container, "--"]
        return [*run, *words], base

    def run(self, words: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv, environment = self.argv(words, env)
        return subprocess.run(
            argv, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
        )

    def start(self, words: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        argv, environment = self.argv(words, env)
        with log.open("wb") as output:  # a file: an unread pipe would block a chatty bot
            return subprocess.Popen(
                argv, cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT
            )

    def close(self) -> None:
        if self.container:
            subprocess.run([*BUILDAH, "rm", self.container], capture_output=True)
            shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def emulators(port: int) -> Iterator[dict[str, str]]:
    """`python -m bot emulators --port N`, and the environment lines it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "emulators", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield _printed_environment(process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _printed_environment(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()  # a thread: the process keeps running, its stdout never ends

    def printed() -> bool:
        return any(line.startswith("# control API") for line in list(lines))

    try:
        wait_until(printed, "`python -m bot emulators` to print its environment", 60)
    except AssertionError:
        raise AssertionError("".join(lines)) from None
    words = [line.strip().partition("=") for line in lines if not line.startswith("#")]
    return {name: value for name, sep, value in words if sep}


# -- the walkthrough ------------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    if IMAGE and not shutil.which("buildah"):
        pytest.skip("RUNBACK_TEST_IMAGE is set but buildah is not installed")
    made = Runner(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_deploy_section_followed_against_the_emulators(
    backend: str, tmp_path: Path, runner: Runner
) -> None:
    deploy = read_deploy()
    emulator_port, port = free_port(), free_port()
    with (
        emulators(emulator_port) as emulator_env,
        empty_database(backend, runner.folder) as database,
    ):
        control = f"http://{emulator_env['RUNBACK_EMULATOR_HOST']}/_emulator"
        # Step 2, the secrets (Secret Manager's values; the bot token is the emulator's).
        tokens = {name: secrets.token_hex(32) for name in ("alert", "tick", "ci")}
        secret_values = {
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_SIGNING_SECRET": secrets.token_hex(16),
            "RUNBACK_ALERT_TOKEN": tokens["alert"],
            "RUNBACK_TICK_TOKEN": tokens["tick"],
            "RUNBACK_CI_TOKEN": tokens["ci"],
            "DATABASE_URL": database,
        }

        # Step 4: the schema job on a fresh database, with the job's secrets only.
        job_env = {name: secret_values[name] for name in deploy.job_secrets}
        upgraded = runner.run(deploy.job_argv, job_env)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert "now at revision" in upgraded.stdout + upgraded.stderr

        # Step 5: serve with exactly the deploy's secrets and env vars, what Cloud Run sets,
        # and the emulators' environment.
        env = {
            **{name: secret_values[name] for name in deploy.secrets},
            **{k: v.replace("PROJECT", PROJECT) for k, v in deploy.env_vars.items()},
            "PORT": str(port),
            "K_SERVICE": "runback",
            **emulator_env,
        }
        serve = runner.start(deploy.serve_argv, env, tmp_path / "serve.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _answers(f"{base}/healthz"), "serve to listen", timeout_s=60)

            # Step 6: Cloud Scheduler's call, as the page's job makes it.
            name, value = deploy.tick_header
            tick = requests.request(
                deploy.tick_method,
                base + deploy.tick_path,
                headers={name: value.replace("TOKEN", tokens["tick"])},
                timeout=10,
            )
            assert tick.status_code == 200 and tick.json() == {"status": "ticked"}, tick.text
            unsigned = requests.request(deploy.tick_method, base + deploy.tick_path, timeout=10)
            assert unsigned.status_code == 401

            # Step 8: the doctor, same environment: clean.
            checked = runner.run(["python", "-m", "bot", "doctor"], env)
            lines = checked.stdout.splitlines()
            assert checked.returncode == 0, checked.stdout + checked.stderr
            not_green = [line for line in lines[:-1] if not line.startswith("✅ ")]
            if backend == "sqlite":  # K_SERVICE is set: SQLite on Cloud Run is the one warning
                assert len(not_green) == 1 and "SQLite serves one instance" in not_green[0]
            else:
                assert not_green == [], checked.stdout
            assert any("2 alert policies notify Runback" in line for line in lines)

            # Step 1: a signed slash command to the manifest's URL, answered through Slack.
            _slash_traffic(control, base, secret_values["SLACK_SIGNING_SECRET"])

            # Step 7: an alert to the webhook URL the page gives, with its token.
            alert = requests.post(
                base + deploy.alert_path.replace("TOKEN", tokens["alert"]),
                data=_alert("wa-backend"),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert alert.status_code == 200, alert.text
            wait_until(
                lambda: _posted(control, "C0INCIDENTS", "Error rate"),
                "the incident card in #incidents",
            )
        except AssertionError as error:
            log = (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{error}\n--- serve's log ---\n{log}") from None
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=15)
            except subprocess.TimeoutExpired:
                serve.kill()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def _slash_traffic(control: str, base: str, signing_secret: str) -> None:
    answer = requests.post(
        f"{control}/slack/response_urls",
        json={"channel": "C0INCIDENTS", "user": "U0ANA"},
        timeout=5,
    )
    body = slash_command(
        "/traffic", "wa-backend", "U0ANA", "ana", "C0INCIDENTS", "incidents", answer.json()["url"]
    )
    sent = requests.post(
        base + manifest_command_path("/traffic"),
        data=body.encode(),
        headers=signed_headers(signing_secret, body),
        timeout=10,
    )
    assert sent.status_code == 200, sent.text
    wait_until(lambda: _posted(control, "C0INCIDENTS", "wa-backend-00003"), "the /traffic answer")


def _posted(control: str, channel: str, words: str) -> bool:
    found = requests.get(f"{control}/slack/messages", params={"channel": channel}, timeout=5)
    return any(words in json.dumps(message) for message in found.json())


def _alert(service: str) -> str:
    """A Cloud Monitoring webhook (version 1.2) for the seed's error-rate policy on ``service``."""
    now = int(time.time())
    incident = {
        "incident_id": f"walkthrough-{secrets.token_hex(4)}",
        "scoping_project_id": PROJECT,
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/1",
        "started_at": now - 60,
        "ended_at": None,
        "state": "open",
        "summary": f"Error rate for {service} is above the threshold of 0.01.",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "service_name": service,
                "revision_name": f"{service}-00003",
                "location": "us-central1",
                "project_id": PROJECT,
            },
        },
        "metric": {
            "type": "run.googleapis.com/request_count",
            "displayName": "Request Count",
            "labels": {"response_code_class": "5xx"},
        },
        "policy_name": f"{service} error rate > 1%",
        "condition_name": f"{service} error rate > 1%",
        "observed_value": "0.02",
        "threshold_value": "0.01",
    }
    return json.dumps({"version": "1.2", "incident": incident})


# -- the built image (opt-in: RUNBACK_TEST_IMAGE) -------------------------------------------------


@pytest.mark.skipif(not IMAGE, reason="set RUNBACK_TEST_IMAGE (scripts/container-walkthrough.sh)")
def test_the_image_runs_unprivileged_without_build_tools(runner: Runner) -> None:
    probe = (
        "import os, shutil, importlib, pkgutil, bot;"
        "print(os.getuid(), os.getcwd());"
        "print([t for t in ('gcc', 'cc', 'g++', 'make', 'clang') if shutil.which(t)]);"
        "print(os.path.exists('/wheels'));"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(bot.__path__, 'bot.')];"
        "print('imported')"
    )
    done = runner.run(["python", "-c", probe], {})
    assert done.returncode == 0, done.stdout + done.stderr
    uid_cwd, tools, wheels, imported = done.stdout.splitlines()
    assert uid_cwd == "10001 /app"
    assert tools == "[]" and wheels == "False" and imported == "imported"
