"""A private S3 endpoint on a free port: moto's standalone server (``moto[server]``)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import free_port, stop_process, wait_until_ready

# What the child's boto3-based internals and any client without explicit credentials
# sign with; moto accepts any credentials unless signature checks are switched on.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/moto-api/")
        connection.getresponse().read()
        return True
    finally:
        connection.close()


@contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """moto's server keeping everything in memory; yields ``http://127.0.0.1:PORT``.

    It accepts any credentials: clients pass dummy ones explicitly.
    """
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **DUMMY_CREDENTIALS,
    }
    # The request log goes to a file: a pipe nobody reads would fill and stall moto.
    with (workdir / "moto.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=workdir,
        )
    try:
        wait_until_ready(process, lambda: _answers(port), f"moto server on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@contextmanager
def s3_server_checking_signatures(workdir: Path) -> Iterator[tuple[str, str, str]]:
    """moto's server verifying every request's SigV4 signature.

    Yields ``(endpoint, access_key_id, secret_access_key)`` of an IAM user allowed all
    of S3; a request signed with anything else is refused.
    """
    import boto3  # moto's own dependency; only this set-up uses it

    with s3_server(workdir) as endpoint:
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        try:
            iam.create_user(UserName="faasflow")
            iam.put_user_policy(
                UserName="faasflow", PolicyName="s3",
                PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",'
                ' "Action": "s3:*", "Resource": "*"}]}',
            )
            key = iam.create_access_key(UserName="faasflow")["AccessKey"]
        finally:
            iam.close()
        # From now on moto authenticates every request (0 unauthenticated ones left).
        port = int(endpoint.rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("POST", "/moto-api/reset-auth", body=b"0")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"moto refused to switch on authentication: {response.status}")
        finally:
            connection.close()
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
