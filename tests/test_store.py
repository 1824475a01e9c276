"""Run records in S3: `runbook demo|run --output s3://…`, `runbook runs` and `runbook review` against moto's S3
server on loopback, through papermill's S3 handler and boto3 unchanged (only the endpoint differs)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from runbooklib.cli import main
from runbooklib.errors import ConfigError, StorageError
from runbooklib.runs import EXIT_BAD_PARAMETERS, EXIT_DIAGNOSED, EXIT_FAILED
from runbooklib.sandbox.ports import free_port
from runbooklib.store import S3Location

BUCKET = "lineup-incidents"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A fresh bucket on moto's server, and the environment a responder's AWS profile would give."""
    for name, value in {"AWS_ENDPOINT_URL_S3": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client: object, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


pytestmark = pytest.mark.notebook


def test_a_run_is_stored_listed_and_reviewed_in_s3(s3: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    location = f"s3://{BUCKET}/records"
    dry = main(["demo", "email_provider_failure", "--scenario", "smtp_auth_failure", "--incident", "INC-77",
                "--no-progress", "--output", location, "-p", "recovery_samples", "2"])
    printed = capsys.readouterr().out
    assert dry == EXIT_DIAGNOSED, printed
    # The documented flow: copy the approve command the dry run printed, name yourself, run it.
    command = printed.splitlines()[printed.splitlines().index(
        "to apply exactly these plans (after reviewing them), run:") + 1].strip()
    assert "switch_email_provider@" in command and command.startswith("runbook demo ")
    argv = [w for w in shlex.split(command.replace("<you>", "alice"))[1:]]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == EXIT_DIAGNOSED, out
    assert re.search(r"APPLIED +switch_email_provider", out), out
    stored = keys(s3, "records/INC-77/")
    bundles = sorted({k.split("/")[2] for k in stored if k.count("/") >= 3})
    assert len(bundles) == 2
    bundle = bundles[-1]
    stored = [k for k in stored if k.split("/")[2] == bundle]
    assert {f"records/INC-77/{bundle}/{name}" for name in ("summary.json", "audit.jsonl", "notebook.html",
                                                          "notebook.ipynb", "evidence/index.jsonl")} <= set(stored)
    assert f"bundle: {location}/INC-77/{bundle}/" in out
    staging = tmp_path / "runs" / ".staging"  # RUNBOOK_RUNS_DIR is tmp_path/runs (conftest)
    assert staging.is_dir() and not list(staging.iterdir()), "the staged copy is removed once stored"

    assert main(["runs", "--output", location]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "email_provider_failure" in lines[2] and "switch_email_provider" in lines[2]

    assert main(["review", "INC-77", "--output", location]) == 0
    assert f"{location}/INC-77/review.md" in capsys.readouterr().out
    markdown = s3.get_object(Bucket=BUCKET, Key="records/INC-77/review.md")["Body"].read().decode()  # type: ignore[attr-defined]
    assert "switch_email_provider: applied — approved by alice" in markdown
    evidence = next(line for line in markdown.splitlines() if line.startswith("| 2 (email_provider_failure)"))
    assert f"{location}/INC-77/{bundle}/" in evidence and evidence.endswith("| all match |"), evidence
    page = s3.get_object(Bucket=BUCKET, Key="records/INC-77/review.html")["Body"].read().decode()  # type: ignore[attr-defined]
    assert page.startswith("<!doctype html>") and "<script" not in page


def test_a_bundle_that_cannot_be_stored_is_kept_and_the_run_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    code = main(["demo", "email_provider_failure", "--scenario", "healthy", "--no-progress",
                 "--output", f"s3://{BUCKET}/records"])
    captured = capsys.readouterr()
    assert code == EXIT_FAILED
    assert "the run's bundle was not stored: could not write" in captured.err
    staged = list((tmp_path / "runs" / ".staging").glob("runbook-staging-*/DRILL-healthy/*/summary.json"))
    assert len(staged) == 1 and str(staged[0].parent) in captured.out


def test_unreachable_or_missing_store_is_a_clear_error(s3: object, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--output", "s3://no-such-bucket/records"]) == EXIT_FAILED
    assert "could not read s3://no-such-bucket/records: NoSuchBucket" in capsys.readouterr().err
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    assert main(["runs", "--output", f"s3://{BUCKET}/records"]) == EXIT_FAILED
    assert f"could not read s3://{BUCKET}/records" in capsys.readouterr().err
    with pytest.raises(StorageError):
        S3Location(f"s3://{BUCKET}").put_text("x", "INC-1", "review.md")


@pytest.mark.parametrize("url, message", [
    ("s3://", "is not an S3 bucket name"),
    ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
    ("s3://bucket/../elsewhere", "'..' is not allowed"),
])
def test_malformed_locations_are_refused_before_anything_runs(url: str, message: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=message):
        S3Location(url)
    assert main(["demo", "--scenario", "healthy", "--no-progress", "--output", url]) == EXIT_BAD_PARAMETERS
    assert message in capsys.readouterr().err


def test_an_empty_location_lists_no_runs(s3: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--output", f"s3://{BUCKET}/nothing-yet"]) == 0
    assert "no runs recorded under s3://lineup-incidents/nothing-yet" in capsys.readouterr().out
    assert main(["review", "INC-1", "--output", f"s3://{BUCKET}/nothing-yet"]) == EXIT_BAD_PARAMETERS


def test_an_upload_cut_short_never_shows_as_a_run(s3: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from papermill.s3 import S3

    bundle = tmp_path / "20261129T010000Z-sms_delivery_failure"
    (bundle / "evidence").mkdir(parents=True)
    for name in ("summary.json", "audit.jsonl", "notebook.html", "zz-review.csv", "evidence/001.csv"):
        (bundle / name).write_text("{}" if name.endswith(".json") else "x\n")
    real, calls = S3.cp_string, []

    def cut_short(self: S3, source: str, dest: str, **kwargs: object) -> object:
        if len(calls) == 3:
            raise ConnectionResetError("connection reset by peer")
        calls.append(dest)
        return real(self, source, dest, **kwargs)

    monkeypatch.setattr(S3, "cp_string", cut_short)
    location = S3Location(f"s3://{BUCKET}/records")
    with pytest.raises(StorageError, match="could not write .*ConnectionResetError"):
        location.upload(bundle, "INC-5", bundle.name)
    assert len(keys(s3, "records/INC-5/")) == 3 and not any(k.endswith("summary.json") for k in keys(s3, "records/"))
    monkeypatch.setattr(S3, "cp_string", real)
    assert main(["runs", "--output", str(location)]) == 0
    assert "no runs recorded" in capsys.readouterr().out
    location.upload(bundle, "INC-5", bundle.name)
    assert keys(s3, "records/INC-5/")[-1].endswith("zz-review.csv") and len(keys(s3, "records/INC-5/")) == 5
