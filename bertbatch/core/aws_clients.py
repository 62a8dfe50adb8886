"""The one place that makes boto3 clients, and the translation of AWS errors to one line.

Tests patch `make_client` (or run under moto's `mock_aws`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session

from .errors import BertBatchError, NoAwsAccess

_LOADER: botocore.loaders.Loader | None = None


def boto_session(*, region: str | None = None, aws_profile: str | None = None) -> boto3.session.Session:
    """A fresh session (credentials resolved anew) sharing one service-model loader, so that
    several clients in one process parse each service model once."""
    global _LOADER
    core = botocore.session.get_session()
    if _LOADER is None:
        _LOADER = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core, profile_name=aws_profile, region_name=region)


def make_client(service: str, *, region: str | None = None, aws_profile: str | None = None) -> Any:
    """A boto3 client for `service` in `region` using the named AWS profile (or the defaults)."""
    try:
        session = boto_session(region=region, aws_profile=aws_profile)
    except botocore.exceptions.ProfileNotFound:
        raise NoAwsAccess(f"AWS profile {aws_profile!r} not found in the AWS config files") from None
    try:
        return session.client(service)
    except botocore.exceptions.ProfileNotFound:
        raise NoAwsAccess(f"AWS profile {aws_profile!r} not found in the AWS config files") from None
    except botocore.exceptions.NoRegionError:
        raise NoAwsAccess("no AWS region: pass --region or set AWS_REGION (or AWS_DEFAULT_REGION)") from None


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


# What S3 answers for a missing key: GetObject says NoSuchKey, HeadObject a bare 404.
NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")


def is_not_found(exc: BaseException) -> bool:
    """The object (or key) does not exist."""
    return error_code(exc) in NOT_FOUND_CODES


def error_message(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip().rstrip(":")
    return str(exc)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def aws_errors() -> Iterator[None]:
    """Turn botocore errors that escape the commands into one clear line."""
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise NoAwsAccess(
            "no AWS credentials found: configure them (aws configure / aws sso login) "
            "or pass --aws-profile"
        ) from None
    except botocore.exceptions.ProfileNotFound as exc:
        raise BertBatchError(one_line(str(exc))) from None
    except botocore.exceptions.NoRegionError:
        raise NoAwsAccess("no AWS region: pass --region or set AWS_REGION (or AWS_DEFAULT_REGION)") from None
    except (
        botocore.exceptions.TokenRetrievalError,
        botocore.exceptions.SSOTokenLoadError,
        botocore.exceptions.UnauthorizedSSOTokenError,
    ) as exc:
        raise NoAwsAccess(f"AWS credentials unusable: {one_line(str(exc))}") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise NoAwsAccess(f"cannot reach AWS: {one_line(str(exc))}") from None
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
                    "UnrecognizedClientException", "InvalidSignatureException"}:
            raise NoAwsAccess(f"AWS credentials rejected ({code}): refresh them and retry") from None
        op = exc.operation_name if hasattr(exc, "operation_name") else "AWS call"
        raise BertBatchError(f"{op} failed: {one_line(error_message(exc))}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise BertBatchError(one_line(str(exc))) from None
