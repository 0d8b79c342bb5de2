"""Strict JSON: NaN and infinities become null, numpy scalars and arrays plain numbers, so any parser reads it."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """`value` with every non-finite float replaced by None and numpy types converted to Python ones."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def dumps(value: Any, **options: Any) -> str:
    return json.dumps(plain(value), allow_nan=False, **options)
