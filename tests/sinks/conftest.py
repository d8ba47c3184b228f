"""A real S3 endpoint for the sink tests: moto's ThreadedMotoServer on a free
loopback port, one per session; each test gets its own bucket (made with boto3:
s3fs cannot create a bucket in us-east-1)."""
from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import free_port

KEY = "testing"
SECRET = "testing"   # moto accepts any credentials


class S3Endpoint:
    def __init__(self, url: str) -> None:
        self.url = url
        self._n = itertools.count()
        self._tag = uuid.uuid4().hex[:8]
        import boto3
        self.client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                                   aws_access_key_id=KEY, aws_secret_access_key=SECRET)

    def bucket(self) -> str:
        # unique across endpoints too: moto's backends are shared by the whole process
        name = f"fchannel-{os.getpid()}-{self._tag}-{next(self._n)}"
        self.client.create_bucket(Bucket=name)
        return name

    def props(self) -> dict[str, str]:
        """The sink properties that point s3fs at this endpoint."""
        return {"hdfs.fs.endpoint_url": self.url, "hdfs.fs.key": KEY,
                "hdfs.fs.secret": SECRET, "hdfs.fs.client_kwargs.region_name": "us-east-1",
                "hdfs.fs.skip_instance_cache": "true",
                "hdfs.fs.config_kwargs.retries.max_attempts": "1"}

    def keys(self, bucket: str) -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore


@contextlib.contextmanager
def moto_s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its URL."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_s3_server() as url:
        yield S3Endpoint(url)
