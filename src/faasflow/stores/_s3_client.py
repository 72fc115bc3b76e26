"""Signed S3 requests to one bucket over httpx: the S3 data store's client.

Requests go out on our own async :mod:`httpx` client, each signed with botocore's SigV4
signer (:class:`botocore.auth.S3SigV4Auth`); credentials come from a botocore
``Session``, that is the standard AWS chain (environment, profile files, container and
instance metadata), unless given explicitly. Why not aiobotocore or boto3: aiobotocore
pins exact botocore versions and so conflicts with the other AWS tools installed beside
faasflow, and boto3 is blocking. The handful of S3 calls a data store needs (PUT, GET,
HEAD, DELETE, CopyObject, ListObjectsV2, DeleteObjects) are small to write, and
botocore's signer plus the async client keeps every call fully async, with one
connection pool per store.

Transient failures (HTTP 500/502/503/504, connection errors) are retried twice with a
short backoff; the callers' requests are all idempotent. botocore's and httpx's errors
are raised as :class:`~faasflow.errors.StoreError` (or, for the AWS configuration,
:class:`~faasflow.errors.ConfigurationError`) naming the operation and the S3 error code.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    Credentials,
    RefreshableCredentials,
)
from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
from botocore.session import Session  # type: ignore[import-untyped]

from faasflow.errors import ConfigurationError, StoreError
from faasflow.httpclient import new_client

__all__ = ["S3_NS", "S3Client", "child_text", "local_name", "parse_xml", "s3_error", "url_path"]

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
"""The namespace of S3's XML documents."""

_ATTEMPTS = 3
_RETRY_STATUS = frozenset({500, 502, 503, 504})
_SIGN_IN_THREAD = 256 * 1024  # hashing a bigger body would stall the event loop


def url_path(object_key: str) -> str:
    """An object key as it goes in a request's path."""
    # Object keys hold only unreserved characters, "/" and "%": escaping "%" once more
    # gives the path exactly as S3's canonical request encodes it.
    return quote(object_key, safe="/~")


def _query(params: Mapping[str, str]) -> str:
    """A query string in SigV4's canonical form (sorted, strictly encoded)."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )


def local_name(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rpartition("}")[2]


def parse_xml(body: bytes) -> ET.Element | None:
    """The root of an XML answer, or ``None`` when the body is not XML."""
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def child_text(element: ET.Element, name: str) -> str:
    """The text of ``element``'s first child called ``name`` (``""`` when none)."""
    for child in element:
        if local_name(child.tag) == name:
            return child.text or ""
    return ""


def s3_error(response: httpx.Response) -> tuple[str, str]:
    """The S3 error code and message of a failed response (HEAD has no body)."""
    root = parse_xml(response.content) if response.content else None
    if root is not None and local_name(root.tag) == "Error":
        return child_text(root, "Code") or str(response.status_code), child_text(
            root, "Message"
        )
    code = {
        301: "PermanentRedirect",
        400: "BadRequest",
        403: "AccessDenied",
        404: "NotFound",
        412: "PreconditionFailed",
    }.get(response.status_code, f"HTTP{response.status_code}")
    return code, response.reason_phrase


class S3Client:
    """Signed requests to one bucket, on a connection pool of its own.

    Args:
        bucket: the bucket every request addresses.
        name: what error messages call the caller, e.g. ``<S3DataStore s3://b/p/>``.
        endpoint: ``http(s)://host[:port]`` of a non-AWS server; ``None`` means AWS.
        region: the signing region; ``None`` reads it from the AWS configuration.
        credentials: botocore credentials; ``None`` uses the AWS credential chain.
        profile: the AWS profile the credential chain reads.
        timeout: seconds for connecting and for each read or write of a request.
        client: an ``httpx.AsyncClient`` to use (not closed here).
    """

    def __init__(
        self,
        bucket: str,
        *,
        name: str,
        endpoint: str | None,
        region: str | None,
        credentials: Credentials | None,
        profile: str | None,
        timeout: float,
        client: httpx.AsyncClient | None,
    ) -> None:
        self.bucket = bucket
        self.name = name
        self.endpoint = endpoint
        self.region = region
        self.credentials: Any = credentials
        self.profile = profile
        self.timeout = timeout
        self.http = client
        self._owns_http = client is None
        self._base = ""
        self._root = ""

    async def open(self) -> None:
        """Resolve credentials and region, and open the connection pool.

        Raises:
            ConfigurationError: no credentials found, or the AWS configuration is broken.
        """
        if self.credentials is None or self.region is None:
            # The credential chain may read files and ask instance metadata over HTTP.
            self.credentials, self.region = await asyncio.to_thread(self._resolve)
        self._base, self._root = self._locate()
        if self.http is None:
            self.http = new_client(timeout=self.timeout)

    async def close(self) -> None:
        """Close the connection pool (when this client opened it)."""
        if self.http is not None and self._owns_http:
            await self.http.aclose()
            self.http = None

    @property
    def bucket_path(self) -> str:
        """The path of the bucket itself (its listing, its creation)."""
        return self._root or "/"

    def object_path(self, object_key: str) -> str:
        """The path of the object ``object_key``."""
        return f"{self._root}/{url_path(object_key)}"

    def _resolve(self) -> tuple[Any, str]:
        try:
            session = Session(profile=self.profile)
            credentials = self.credentials or session.get_credentials()
            region = self.region or session.get_config_variable("region") or "us-east-1"
        except BotoCoreError as exc:
            raise ConfigurationError(f"{self.name}: AWS configuration: {exc}") from exc
        if credentials is None:
            raise ConfigurationError(
                f"{self.name}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or put them in the store URL"
            )
        return credentials, region

    def _locate(self) -> tuple[str, str]:
        """The base URL requests go to, and the bucket's path under it."""
        if self.endpoint is not None:
            return self.endpoint, f"/{self.bucket}"
        suffix = "amazonaws.com.cn" if str(self.region).startswith("cn-") else "amazonaws.com"
        if "." in self.bucket:
            # A dotted name does not match the wildcard TLS certificate of virtual hosts.
            return f"https://s3.{self.region}.{suffix}", f"/{self.bucket}"
        return f"https://{self.bucket}.s3.{self.region}.{suffix}", ""

    def _ready(self) -> httpx.AsyncClient:
        if self.http is None or not self._base:
            raise StoreError(f"{self.name} is not open; use 'async with' or await open()")
        return self.http

    async def _signed_headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        credentials = self.credentials
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        try:
            if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
                # Refreshing asks STS, a container or instance metadata over HTTP.
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
            signer = S3SigV4Auth(frozen, "s3", self.region)
            if len(body) > _SIGN_IN_THREAD:
                await asyncio.to_thread(signer.add_auth, request)
            else:
                signer.add_auth(request)
        except BotoCoreError as exc:
            raise StoreError(f"{self.name}: signing failed: {exc}") from exc
        return {name: str(value) for name, value in request.headers.items()}

    async def send(
        self,
        what: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 204),
        key: str | None = None,
    ) -> httpx.Response:
        """Sign and send one request, retrying transient failures.

        Returns the response when its status is in ``ok``; raises StoreError otherwise,
        naming ``what`` and ``key``.
        """
        client = self._ready()
        url = self._base + path
        if params:
            url += "?" + _query(params)
        for attempt in range(1, _ATTEMPTS + 1):
            signed = await self._signed_headers(method, url, body, headers or {})
            try:
                response = await client.request(
                    method, url, headers=signed, content=body if body or method == "PUT" else None
                )
            except httpx.HTTPError as exc:
                if attempt < _ATTEMPTS and isinstance(exc, httpx.TransportError):
                    await asyncio.sleep(0.05 * 4 ** (attempt - 1))
                    continue
                where = self.endpoint or self._base
                subject = f" {key!r}" if key is not None else ""
                trouble = "cannot reach" if isinstance(exc, httpx.TransportError) else "with"
                raise StoreError(
                    f"{self.name}: {what}{subject} failed: {trouble} {where}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if response.status_code in ok:
                return response
            if response.status_code in _RETRY_STATUS and attempt < _ATTEMPTS:
                await asyncio.sleep(0.05 * 4 ** (attempt - 1))
                continue
            raise self.error(what, key, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def error(self, what: str, key: str | None, response: httpx.Response) -> StoreError:
        """The error of operation ``what`` (on ``key``) that S3 answered with ``response``."""
        code, message = s3_error(response)
        subject = f" {key!r}" if key is not None else ""
        detail = f": {message}" if message else ""
        return StoreError(
            f"{self.name}: {what}{subject} failed: {code}{detail} (HTTP {response.status_code})"
        )
