"""A checkpoint's config.json held against its tensors. transformers builds the model from the config and then
fills what the weights lack with random values and drops what it does not expect, so a config that does not
describe its weights gives a model (and cached results) that silently differ from the weights analysed."""
from __future__ import annotations

import json
import multiprocessing
import re
import sys
import threading
from functools import lru_cache

import torch

from explorer.checkpoints.files import PARAMETER_NAME
from explorer.checkpoints.stores import LoraStore, TensorStore
from explorer.core.errors import CheckpointError, one_line
from explorer.core.imports import locked_import

_BLOCK = re.compile(r"^(.*?\.\d+)\.")  # model.layers.3.mlp.up_proj.weight -> model.layers.3


def check_config(store: TensorStore) -> None:
    """Refuse a config.json that does not describe the store's tensors: a layer the weights lack, a tensor of
    another shape than the config gives (hidden_size, vocab_size, ...), a weight the model does not have.
    Tensors the config describes but no file holds are allowed here (the weight analyses read what is there);
    load_model refuses them, where they would be filled at random."""
    if isinstance(store, LoraStore):
        return  # its config is its parent's, checked with the parent
    config = store.config
    model = _model_shapes(config, store.label)
    if model is None:
        return  # an architecture transformers does not know: it cannot load it either, and says so then
    shapes, ignored, model_type = model
    layers = f"num_hidden_layers={config['num_hidden_layers']}" if "num_hidden_layers" in config else "its layers"
    names = store.names()
    held = {_block(name) for name in names}
    missing = sorted({_block(name) for name in shapes} - held - {None}, key=_natural)
    if missing:
        raise CheckpointError(f"{store.label}: config.json ({layers}) describes {missing[0]}, but the weights in "
                              f"{store.folder} hold no tensor of it; transformers would fill it with random values: "
                              "correct config.json or give the missing weights")
    for name in names:
        if name in shapes and store.shape(name) != shapes[name]:
            raise CheckpointError(f"{store.label}: tensor {name} is {store.shape(name)} in the weights, but a "
                                  f"{model_type} built from config.json has {shapes[name]}; config.json (hidden_size, "
                                  "intermediate_size, vocab_size, head counts) does not describe these weights")
        if name not in shapes and PARAMETER_NAME.search(name) and not any(re.search(p, name) for p in ignored):
            raise CheckpointError(f"{store.label}: the weights hold {name}, which a {model_type} built from "
                                  f"config.json ({layers}) does not have, so transformers would drop it: correct "
                                  "config.json")


def _block(name: str) -> str | None:
    match = _BLOCK.match(name)
    return match.group(1) if match else None


def _natural(block: str) -> tuple[str, int]:
    prefix, _, number = block.rpartition(".")
    return prefix, int(number)


Built = tuple[dict[str, tuple[int, ...]], tuple[str, ...], str] | str | None
_NOT_BUILT = object()  # the child ended, or was stopped, without a result
CHILD_TIMEOUT_S = 300  # past this the child is stopped and the model built here instead


@lru_cache(maxsize=16)
def _built(config_text: str) -> Built:
    """_build, in a forked child where transformers is not yet imported: a command that computes on weights only
    then never holds transformers' modules, 150 to 200 MB resident, a third of the demo's 513 MB checkpoint.
    Only a single-threaded process forks (a command before its work starts; never the app's server)."""
    if "transformers" in sys.modules or sys.platform != "linux" or not _single_threaded() \
            or multiprocessing.current_process().daemon:
        return _build(config_text)
    built = _build_in_child(config_text)
    return _build(config_text) if built is _NOT_BUILT else built


def _build_in_child(config_text: str) -> Built | object:
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_send_built, args=(config_text, send), daemon=True)
    try:
        child.start()
    except OSError:
        return _NOT_BUILT
    send.close()
    try:
        return receive.recv() if receive.poll(CHILD_TIMEOUT_S) else _NOT_BUILT
    except (EOFError, OSError):
        return _NOT_BUILT
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join()


def _single_threaded() -> bool:
    """No thread but this one, or tqdm's monitor, which only sleeps between looks at its bars: a thread that
    holds a lock at the fork would leave the child waiting on it for ever."""
    return all(thread is threading.current_thread() or type(thread).__name__ == "TMonitor"
               for thread in threading.enumerate())


def _send_built(config_text: str, send) -> None:
    try:
        send.send(_build(config_text))
    finally:
        send.close()


def _build(config_text: str) -> Built:
    """{name: shape} of every tensor of the model transformers builds from this config (on the meta device: no
    memory), the patterns of unexpected names it ignores and the model type; None for a model type it has no
    causal LM for; the reason as text where it cannot build one."""
    transformers = locked_import("transformers")
    causal_lm = locked_import("transformers.models.auto.modeling_auto").MODEL_FOR_CAUSAL_LM_MAPPING
    raw = json.loads(config_text)
    model_type = raw.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        return None
    try:
        config = transformers.CONFIG_MAPPING[model_type].from_dict(raw)
        if type(config) not in causal_lm:
            return None
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
    except Exception as exc:  # transformers' config validation and model classes raise many types
        return one_line(exc, 200)
    state = model.state_dict()
    shapes = {name: tuple(value.shape) for name, value in state.items()}
    shapes.update(_saved_shapes(model, state))
    return shapes, tuple(model._keys_to_ignore_on_load_unexpected or ()), model_type


def _saved_shapes(model, state: dict) -> dict[str, tuple[int, ...]]:
    """{name: shape} as save_pretrained writes them. transformers >= 5 converts some layouts on load and back on
    save (a mixture of experts' per-expert matrices, stacked into one 3-D tensor in the model), and loads either,
    so a checkpoint may hold these names or the model's own."""
    try:
        revert = locked_import("transformers.core_model_loading").revert_weight_conversion
    except (ImportError, AttributeError):
        return {}  # transformers < 5 converts nothing
    try:
        return {name: tuple(value.shape) for name, value in revert(model, dict(state)).items()}
    except Exception:  # a conversion that cannot run on the meta device: the model's own names only
        return {}


def _model_shapes(config: dict, label: str) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...], str] | None:
    built = _built(json.dumps(config, sort_keys=True))
    if isinstance(built, str):
        raise CheckpointError(f"{label}: transformers cannot build a {config.get('model_type')} model from "
                              f"config.json ({built})")
    return built
