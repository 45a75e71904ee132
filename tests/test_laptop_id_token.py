"""The doctor on a laptop: ADC from `gcloud auth application-default login
--impersonate-service-account runback@…` (docs/deploying.md, step 8) is gcloud's ADC file of type
`impersonated_service_account`, which `google.oauth2.id_token.fetch_id_token` does not read.
Runback's probe then gets the ID token from IAM Credentials' generateIdToken as the
impersonated service account. Offline: the OAuth 2 token endpoint is the file's own
`token_uri`, and https://iamcredentials.googleapis.com is reached through a local HTTPS proxy
whose CA the process trusts (tests/tls_front.py), answered by the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.config import load_config
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed
from tests.tls_front import TlsFront

REPO = Path(__file__).resolve().parents[1]
RUNBACK_SA = "runback@runback-sandbox.iam.gserviceaccount.com"
PROBE = """
import json, sys
from google.auth import jwt
from bot.gcp.probe import HttpProbe, fetch_google_id_token
url, audience = sys.argv[1], sys.argv[2]
result = HttpProbe().get(url, 10, audience=audience)
claims = jwt.decode(fetch_google_id_token(audience), verify=False)
print(json.dumps({"status": result.status, "problem": result.problem,
                  "detail": result.detail, "email": claims.get("email"), "aud": claims["aud"]}))
"""


def adc_file(folder: Path, emulator: Emulator) -> Path:
    """gcloud's ADC file after `--impersonate-service-account`, in CLOUDSDK_CONFIG."""
    gcloud = folder / "gcloud"
    gcloud.mkdir()
    impersonation = (
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
        f"{RUNBACK_SA}:generateAccessToken"
    )
    (gcloud / "application_default_credentials.json").write_text(
        json.dumps(
            {
                "type": "impersonated_service_account",
                "service_account_impersonation_url": impersonation,
                "delegates": [],
                "source_credentials": {
                    "type": "authorized_user",
                    "client_id": "764086051850-sandbox.apps.googleusercontent.com",
                    "client_secret": "sandbox-client-secret",
                    "refresh_token": "1//sandbox-refresh-token",
                    "token_uri": f"{emulator.url}/token",
                },
            }
        )
    )
    return gcloud


def test_an_impersonated_adc_gets_its_id_token_from_iam_credentials(
    emulator: Emulator, tmp_path: Path
) -> None:
    seed(emulator, load_config(REPO / "app.yaml"))
    emulator.cloudrun.require_auth("wa-backend")
    service_url = f"{emulator.url}/_svc/wa-backend"
    hosts = ["iamcredentials.googleapis.com", "oauth2.googleapis.com"]
    with TlsFront(tmp_path, hosts, emulator.host) as front:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_"))},
            **front.env(),
            "NO_PROXY": "127.0.0.1,localhost",
            "CLOUDSDK_CONFIG": str(adc_file(tmp_path, emulator)),
            "GCE_METADATA_HOST": "127.0.0.1:9",  # no metadata server on a laptop
            "GCE_METADATA_IP": "127.0.0.1:9",
        }
        done = subprocess.run(
            [sys.executable, "-c", PROBE, f"{service_url}/health", service_url],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200 and answer["problem"] == "", answer
    assert answer["email"] == RUNBACK_SA and answer["aud"] == service_url
    calls = {call.api for call in emulator.router.calls.list()}
    assert {"oauth2.token", "iamcredentials.generateIdToken"} <= calls
