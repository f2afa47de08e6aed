"""`make serve` in a child process: the Connect API, gRPC and the embedded DynamoDB on free ports."""

import subprocess
import sys

import boto3

from harness.moto import ROOT


class LocalServer:
    def __init__(self, *arguments: str, environment: dict | None = None, stderr=subprocess.DEVNULL):
        import os

        self.process = subprocess.Popen(
            [sys.executable, "-m", "devserver.serve", "--port", "0", "--grpc-port", "0", *arguments],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **(environment or {})},
        )
        self.url = self._announced("Connect API on ")
        self.grpc_target = self._announced("gRPC on ")
        self.dynamodb_url = self._announced("embedded DynamoDB on ").split(",")[0]
        self.table = "my-reservation-local"

    def _announced(self, marker: str) -> str:
        for line in self.process.stdout:
            if marker in line:
                return line.split(marker, 1)[1].strip()
        raise RuntimeError("the local server stopped before announcing " + marker)

    def dynamodb(self):
        return boto3.client(
            "dynamodb",
            endpoint_url=self.dynamodb_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
