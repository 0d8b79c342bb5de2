"""Heavy libraries that live computation imports on first use, imported under one lock.

transformers swaps its module object while it loads; a second thread importing from it at that moment gets
`ImportError: cannot import name 'AutoModelForCausalLM'`. Two app sessions starting live work on a fresh server
do exactly that, so every such import goes through here.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType

_LOCK = threading.RLock()


def locked_import(module: str) -> ModuleType:
    with _LOCK:
        return importlib.import_module(module)


def auto_classes() -> tuple[type, type]:
    """transformers' AutoModelForCausalLM and AutoTokenizer."""
    with _LOCK:
        transformers = importlib.import_module("transformers")
        return transformers.AutoModelForCausalLM, transformers.AutoTokenizer
