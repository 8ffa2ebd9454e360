"""Sharing results through an S3 DVC remote: moto's S3 server on loopback (with IAM credentials
checked), the tiny run pushed to it, fresh clones pulled from it (all, or only the stores), and a
broken remote (bad credentials, missing bucket, unreachable endpoint) failing clearly without
touching local results."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers.workflow import TINY_ARGS, planned_jobs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BUCKET, PREFIX = "cromss", "results"
TARGET = "results/tables/table3.csv"
# moto serves this many requests without checking credentials: the IAM user, its key and
# policy, and the bucket; every later request must be signed with that key
SETUP_REQUESTS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server on 127.0.0.1 with one bucket and one IAM user allowed to use it: the
    endpoint and the environment with that user's credentials."""
    if shutil.which("moto_server") is None:
        pytest.skip("moto_server is missing: pip install 'moto[server]'")
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    server = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                              stderr=subprocess.STDOUT,
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)})
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        client = dict(endpoint_url=endpoint, region_name="us-east-1")
        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup",
                           **client)
        iam.create_user(UserName="cromss")
        key = iam.create_access_key(UserName="cromss")["AccessKey"]
        iam.put_user_policy(UserName="cromss", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        credentials = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                       "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        boto3.client("s3", **client, aws_access_key_id=key["AccessKeyId"],
                     aws_secret_access_key=key["SecretAccessKey"]).create_bucket(Bucket=BUCKET)
        nowhere = tmp_path_factory.mktemp("aws") / "none"
        env = {**os.environ, **credentials, "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": str(nowhere), "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
               "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
        yield endpoint, env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def run(*command: str | Path, cwd: Path, env: dict[str, str], check: bool = True
        ) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def origin(finished_tiny_run: Path, s3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run whose results are committed to DVC and pushed to the S3 remote
    (the commands of docs/dvc.md, "A shared S3 remote")."""
    endpoint, env = s3
    repo = tmp_path_factory.mktemp("s3") / "origin"
    shutil.copytree(finished_tiny_run, repo, symlinks=True)
    run("dvc", "remote", "add", "-d", "shared", f"s3://{BUCKET}/{PREFIX}", cwd=repo, env=env)
    run("dvc", "remote", "modify", "shared", "endpointurl", endpoint, cwd=repo, env=env)
    run("dvc", "commit", "-f", cwd=repo, env=env)
    run("git", "add", "dvc.lock", ".dvc/config", cwd=repo, env=env)
    run("git", "commit", "-qm", "results on the shared S3 remote", cwd=repo, env=env)
    run("dvc", "push", cwd=repo, env=env)
    return repo


def clone(origin: Path, env: dict[str, str], target: Path) -> Path:
    run("git", "clone", "-q", origin, target, cwd=target.parent, env=env)
    return target


def test_push_pull_through_s3_then_snakemake_plans_nothing(origin, s3, tmp_path):
    _, env = s3
    repo = clone(origin, env, tmp_path / "clone")
    run("bash", "workflow/scripts/dvc_pull.sh", *TINY_ARGS, cwd=repo, env=env)
    assert (repo / TARGET).read_text() == (origin / TARGET).read_text()
    assert planned_jobs(repo, TARGET, *TINY_ARGS) == {}


def planned_outputs(repo: Path, env: dict[str, str], *args: str) -> set[str]:
    """Every output file of the jobs a dry run plans."""
    out = run("snakemake", "-n", *args, cwd=repo, env=env).stdout
    return {path.strip() for line in out.splitlines() if line.strip().startswith("output:")
            for path in line.split(":", 1)[1].split(",")}


def test_pulling_only_the_stores_plans_pretraining_and_downstream(origin, s3, tmp_path):
    _, env = s3
    repo = clone(origin, env, tmp_path / "clone")
    run("dvc", "pull", "results/data", cwd=repo, env=env)
    assert (repo / "results/data").is_dir() and not (repo / "results/pretrain").exists()
    planned = planned_outputs(repo, env, TARGET, *TINY_ARGS)
    assert TARGET in planned
    assert any(p.startswith("results/pretrain/") for p in planned)
    assert any(p.startswith("results/finetune/") for p in planned)
    assert not [p for p in planned if p.startswith(("results/data/", "results/raw/"))]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Modification time and content hash of every file under root."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


# how each broken remote is made (credentials, or a --local remote setting) and DVC's reason
BROKEN = {
    "bad credentials": ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, None,
                        r"Forbidden|SignatureDoesNotMatch|signature we calculated does not match"),
    "missing bucket": ({}, ("url", "s3://no-such-bucket/results"),
                       r"NoSuchBucket|bucket does not exist"),
    # one attempt per request: botocore's retries with back-off otherwise take minutes here
    "unreachable endpoint": ({"AWS_MAX_ATTEMPTS": "1"},
                             ("endpointurl", f"http://127.0.0.1:{free_port()}"),
                             r"Could not connect to the endpoint URL"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_remote_fails_clearly_and_keeps_local_results(origin, s3, tmp_path, case):
    _, env = s3
    change_env, setting, reason = BROKEN[case]
    broken_env = {**env, **change_env}
    repo = clone(origin, env, tmp_path / "clone")
    mine = repo / TARGET  # a table of the user's own, made before pulling
    mine.parent.mkdir(parents=True)
    mine.write_text("my own table\n")
    for checkout in (repo, origin):
        if setting:
            run("dvc", "remote", "modify", "--local", "shared", *setting, cwd=checkout, env=env)
    before = snapshot(origin / "results"), snapshot(repo / "results")
    try:
        pull = run("bash", "workflow/scripts/dvc_pull.sh", *TINY_ARGS, cwd=repo, env=broken_env,
                   check=False)
        push = run("dvc", "push", cwd=origin, env=broken_env, check=False)
    finally:
        if setting:
            run("dvc", "remote", "modify", "--local", "--unset", "shared", setting[0], cwd=origin,
                env=env)
    assert pull.returncode != 0 and push.returncode != 0
    assert re.search(reason, pull.stderr) and re.search(reason, push.stderr + push.stdout)
    assert "dvc_pull.sh: dvc pull from the remote failed" in pull.stderr
    assert (snapshot(origin / "results"), snapshot(repo / "results")) == before
