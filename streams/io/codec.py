"""The JSON codec used for every event and report line, chosen in one place so the benchmark's
decode-only floor uses exactly what the pipeline uses."""

from __future__ import annotations

import json
from typing import Any

# The standard library's decoder is what every reader of the files would use; a faster codec would
# speed decoding but not the domain, which dominates (see docs/benchmarks.md).
decode = json.loads


# What json.dumps(obj, separators=(",", ":"), ensure_ascii=False) does, without building an encoder
# per call (about 1 us of the 7 a report row costs to encode).
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(obj: Any) -> str:
    return _encoder.encode(obj)
