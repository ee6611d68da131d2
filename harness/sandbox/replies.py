"""What a submission worker may answer: every reply is untrusted data, checked here before
the harness uses any of it (docs/SECURITY.md).

A reply is one JSON header and ``n_arrays`` ``.npy`` frames.  :func:`parse_header` refuses
anything outside the schema: an unknown ``kind`` or ``stage``, counts that are not bounded
non-negative integers (``10**400``), non-finite or negative numbers (``NaN``, ``Infinity``),
over-long or control-character strings, unknown keys, deep nesting.  :func:`parse_array`
reads a frame's header first and refuses a dtype other than bool/int/uint/float, a shape
whose size does not match the bytes actually received (``2**40`` elements declared in a
few bytes), before allocating anything.  A violation raises :class:`ReplyError`; the
worker is then killed and the record says ``crash: ProtocolError`` with the reason.
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: stages a worker may report (the parent adds timeout/resource/crash itself)
WORKER_STAGES = ("load", "explain", "validate-output", "sandbox", "resource", "crash")
MAX_COUNT = 10**12
MAX_HEADER_BYTES = 1 << 20
MAX_DEPTH = 8
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class ReplyError(ValueError):
    """A worker's reply is outside the protocol."""


def _clean(s: str, n: int) -> str:
    """Bounded, without control characters but newline/tab (those are escaped when shown)."""
    return _CTRL.sub("?", s)[:n]


Count = Field(ge=0, le=MAX_COUNT)
Number = Field(ge=0, le=1e15, allow_inf_nan=False)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    n_arrays: int = Field(ge=0, le=1_000_000)


class Ready(_Reply):
    kind: Literal["ready"]
    pid: int = Field(ge=0, le=2**31)
    layers: list[str] = Field(max_length=64)

    @field_validator("layers")
    @classmethod
    def _layers(cls, v):
        return [_clean(x, 80) for x in v]


class Ok(_Reply):
    kind: Literal["ok", "closed"]


class Error(_Reply):
    kind: Literal["error"]
    stage: Literal[WORKER_STAGES]  # type: ignore[valid-type]
    type: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")
    message: str = Field(max_length=4000)
    traceback: str = Field(default="", max_length=8000)

    @field_validator("message", "traceback")
    @classmethod
    def _text(cls, v):
        return _clean(v, 8000)


class BadOutput(_Reply):
    kind: Literal["bad-output"]
    message: str = Field(max_length=2000)

    @field_validator("message")
    @classmethod
    def _text(cls, v):
        return _clean(v, 2000)


class Result(_Reply):
    """An explain() answer.  ``forward``/``backward``/``mlm`` and ``seconds``/``peak_*`` are
    the worker's own figures: shown as self-reported, never used as measurements."""

    kind: Literal["result"]
    level: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,39}$")
    scores_kind: Literal["array", "list"]
    n_scores: int = Field(ge=0, le=1_000_000)
    extras: list[str] = Field(max_length=64)
    forward: int = Count
    backward: int = Count
    mlm: int = Count
    seconds: float = Number
    peak_rss_mb: Optional[float] = Number
    peak_cuda_mb: Optional[float] = Number

    @field_validator("extras")
    @classmethod
    def _names(cls, v):
        for x in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,79}", x):
                raise ValueError(f"invalid extra name {x[:40]!r}")
        return v


Reply = Union[Ready, Ok, Error, BadOutput, Result]
_BY_KIND = {"ready": Ready, "ok": Ok, "closed": Ok, "error": Error, "bad-output": BadOutput, "result": Result}


def _depth(x: Any, d: int = 0) -> int:
    if d > MAX_DEPTH:
        return d
    if isinstance(x, dict):
        return max([_depth(v, d + 1) for v in x.values()] or [d + 1])
    if isinstance(x, list):
        return max([_depth(v, d + 1) for v in x] or [d + 1])
    return d


def refuse_constant(name: str):
    """``json.loads(..., parse_constant=refuse_constant)``: NaN / Infinity are not JSON numbers."""
    raise ReplyError(f"non-finite number {name} in JSON")


def parse_header(raw: bytes) -> Reply:
    if len(raw) > MAX_HEADER_BYTES:
        raise ReplyError(f"reply header of {len(raw)} bytes (limit {MAX_HEADER_BYTES})")
    if raw.count(b"[") + raw.count(b"{") > 100_000:
        raise ReplyError("reply header has too many nested values")
    try:
        obj = json.loads(raw, parse_constant=refuse_constant)
    except RecursionError:
        raise ReplyError("reply header is nested too deeply") from None
    except ReplyError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise ReplyError(f"reply header is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(obj, dict):
        raise ReplyError("reply header is not an object")
    if _depth(obj) > MAX_DEPTH:
        raise ReplyError("reply header is nested too deeply")
    model = _BY_KIND.get(obj.get("kind")) if isinstance(obj.get("kind"), str) else None
    if model is None:
        raise ReplyError(f"unknown reply kind {str(obj.get('kind'))[:40]!r}")
    for k, v in obj.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ReplyError(f"non-finite {k[:40]!r} in the reply header")
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))[:40]}: {x['msg'][:120]}" for x in e.errors()[:5])
        raise ReplyError(f"reply header outside the schema: {errs}") from None


ALLOWED_DTYPE_KINDS = "biuf"


def parse_array(data: bytes | memoryview) -> np.ndarray:
    """A ``.npy`` frame, checked against its byte length before anything is allocated."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10_000)
        else:
            raise ReplyError(f"unsupported .npy version {version}")
    except ReplyError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy's own parse errors, reported as protocol errors
        raise ReplyError(f"invalid .npy frame: {type(e).__name__}: {str(e)[:200]}") from None
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.hasobject or dtype.itemsize > 16 or dtype.fields:
        raise ReplyError(f"array dtype {dtype} is not a plain numeric type")
    if len(shape) > 8 or any((not isinstance(d, int)) or d < 0 for d in shape):
        raise ReplyError(f"invalid array shape {shape}")
    count = math.prod(shape)
    offset = f.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ReplyError(f"array declares shape {shape} of {dtype} ({count * dtype.itemsize} bytes) but "
                         f"{len(data) - offset} bytes came")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return np.array(arr)  # own, writable copy
