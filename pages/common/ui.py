"""What every page shares: the family picker, the glossary, cached reads of precomputed tables, errors, downloads,
and the live actions' check for checkpoints."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from explorer.core.errors import ExplorerError  # noqa: E402

# The engine (torch, pandas) is imported inside the functions that need it, after a page has drawn its title:
# on a freshly started server those imports take seconds, and a page should never be blank for that long.
if TYPE_CHECKING:
    import pandas as pd

    from explorer.checkpoints.family import Family
    from explorer.results.bundle import Bundle

FAMILIES = ROOT / "families"
DEMO = FAMILIES / "demo.toml"
OTHER = "Another family file…"
BUILD_HINT = "Build the demo checkpoints with `make demo` (about 25 minutes on 2 CPU cores)."
GLOSSARY = (
    "**ρ** rank fraction: each tensor's subspace has k = ρ · min(rows, columns) directions  \n"
    "**k** number of directions kept; *k over all tensors* sums them over every projected tensor  \n"
    "**η** energy fraction: an update's subspace is its fewest top singular directions holding η of its "
    "squared singular values  \n"
    "**MSO** mode subspace overlap of two such subspaces: 0 = orthogonal, 1 = one inside the other  \n"
    "**d′** separation of harmful and benign prompts along the refusal direction, in pooled standard deviations")


def _use_app_navigation() -> None:
    """A fresh server's first session, opened at a page's own URL, runs that page in Streamlit's legacy pages/
    mode, without app.py, and lists "app" first in the navigation; run app.py's navigation instead."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def page(name: str, heading: str, intro: str) -> Bundle | None:
    """Page config, heading and introduction, the family's job in the sidebar, then the chosen family's results:
    None while it has none (a page offers to compute what it needs: pages.common.compute)."""
    from pages.common.job_panel import job_panel

    _use_app_navigation()
    st.set_page_config(page_title=f"{name} · Subspace Explorer", page_icon="🧭", layout="wide")
    st.title(heading)
    st.markdown(intro)
    result = bundle()
    with errors("Reading the family's job"):
        job_panel(family_name())
    if result is not None:
        _comparison_picker(result)
    with st.sidebar.expander("Glossary", expanded=True):
        st.caption(GLOSSARY)
    return result


def family_name() -> str:
    """The chosen family's name, from its file (checked by bundle(), which every page calls first)."""
    from explorer.checkpoints.family import read_family_spec

    return str(read_family_spec(st.session_state["family"])["name"])


log = logging.getLogger("explorer.app")


@contextlib.contextmanager
def errors(operation: str = "Loading this page"):
    """Show any error as one st.error box and stop the page, never as a traceback.

    Engine errors say what was wrong with the input; anything else is a bug or an environment problem, so the
    box names the operation and the traceback goes to the server log. Streamlit's own st.stop and st.rerun
    are BaseExceptions and pass through.
    """
    try:
        yield
    except ExplorerError as exc:
        st.error(str(exc))
        st.stop()
    except Exception as exc:
        log.exception("%s failed", operation)
        st.error(f"{operation} failed with an unexpected {type(exc).__name__}; the details are in the server's log.")
        st.stop()


def _on_family_change() -> None:
    choice = st.session_state["family_choice"]
    if choice != OTHER:
        st.session_state["family"] = str(FAMILIES / choice)


def _on_path_change() -> None:
    st.session_state["family"] = st.session_state["family_path_input"].strip()


def family_path() -> str:
    """The sidebar's family picker; the choice persists across pages in session state."""
    st.session_state.setdefault("family", str(DEMO))
    files = sorted(p.name for p in FAMILIES.glob("*.toml"))
    files = (["demo.toml"] if "demo.toml" in files else []) + [f for f in files if f != "demo.toml"]
    current = Path(st.session_state["family"])
    is_listed = current.parent == FAMILIES and current.name in files
    options = files + [OTHER]
    st.sidebar.selectbox("Family", options, index=options.index(current.name) if is_listed else len(files),
                         key="family_choice", on_change=_on_family_change)
    if not is_listed or st.session_state.get("family_choice") == OTHER:
        st.sidebar.text_input("Family file (TOML)", value="" if is_listed else st.session_state["family"],
                              key="family_path_input", on_change=_on_path_change,
                              placeholder="path/to/family.toml")
    return st.session_state["family"]


@st.cache_data(show_spinner=False)
def _bundle(name: str, stamp: float) -> Bundle:
    from explorer.results.bundle import Bundle

    return Bundle.load(name)


def _stamp(name: str) -> float:
    from explorer.results.bundle import find_bundle

    folder = find_bundle(name)
    return (folder / "manifest.json").stat().st_mtime if folder else 0.0


def bundle() -> Bundle | None:
    """The chosen family's precomputed results, or None if it has none yet; stops the page with a clear message if
    the family file or its results cannot be read."""
    from explorer.checkpoints.family import read_family_spec
    from explorer.results.summary import profile_note

    path = family_path()
    with errors("Loading the precomputed results"):
        name = str(read_family_spec(path)["name"])
        stamp = _stamp(name)
        if not stamp:
            st.sidebar.caption(f"**{name}** · no results computed yet")
            return None
        result = _bundle(name, stamp)
    manifest = result.manifest
    extensions = [e["created"][:10] for e in manifest.get("extensions", []) if isinstance(e, dict) and "created" in e]
    extended = f" (grid extended {extensions[-1]})" if extensions else ""
    scored = bool(result.scores) or result.has("projection") or result.has("safelora")
    st.sidebar.caption(f"**{manifest['family']}** · precomputed {manifest['created'][:10]}{extended} · "
                       + (profile_note(manifest) if scored else "nothing scored yet"))
    return result


NO_COMPARISON = "none"
# The demo families are each other's natural comparison: the same recipe but for the breadth of the alignment.
PAIRED = {"demo": "demo-broad", "demo-broad": "demo"}


def _families_with_results() -> dict[str, Path]:
    """Family name -> file, for the family files in families/ and beside the chosen family's file that have
    precomputed results."""
    from explorer.checkpoints.family import read_family_spec
    from explorer.results.bundle import find_bundle

    found = {}
    folders = dict.fromkeys([FAMILIES, Path(st.session_state["family"]).parent])
    for path in sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.toml")):
        try:
            name = str(read_family_spec(path)["name"])
            if find_bundle(name):
                found[name] = path
        except ExplorerError:
            continue
    return found


def _comparison_picker(current: Bundle) -> None:
    """The sidebar's choice of a second family; it persists across pages. By default a demo family is compared
    with the other demo family."""
    name = current.manifest["family"]
    key = _compare_key(name)
    others = [n for n in _families_with_results() if n != name]
    if not others:
        st.session_state.pop(key, None)
        return
    options = [NO_COMPARISON, *others]
    chosen = st.session_state.get("compare_family", PAIRED.get(name, NO_COMPARISON))
    st.sidebar.selectbox("Compare with", options, index=options.index(chosen) if chosen in options else 0,
                         key=key, help="A second family with precomputed results, drawn beside this one on the "
                                       "Overview and overlaid on the energy and MSO curves.",
                         on_change=lambda: st.session_state.update(compare_family=st.session_state[key]))


def _compare_key(name: str) -> str:
    """Each family's own comparison widget: another family does not inherit the last one's (demo's demo-broad)."""
    return f"compare_choice_{name}"


def comparison(current: Bundle) -> tuple[str, Bundle] | None:
    """The second family chosen in the sidebar, with its precomputed results; None for no comparison."""
    choice = st.session_state.get(_compare_key(current.manifest["family"]), NO_COMPARISON)
    if choice in (NO_COMPARISON, current.manifest["family"]):
        return None
    try:
        return choice, _bundle(choice, _stamp(choice))
    except ExplorerError as exc:
        st.sidebar.warning(f"Cannot compare with {choice}: {exc}")
        return None


@st.cache_data(show_spinner=False)
def _findings(folder: str, stamp: float, fracs: tuple[float, ...] | None) -> list:
    from explorer.results.bundle import Bundle
    from explorer.results.family_comparison import SharedGrid
    from explorer.results.findings import findings

    return findings(Bundle(Path(folder)) if fracs is None else SharedGrid(Path(folder), fracs))


def findings_of(source: Bundle) -> list:
    """The six findings measured on a bundle (or on part of its grid: a SharedGrid), computed once per bundle
    version (they bootstrap over prompts)."""
    return _findings(str(source.folder), (source.folder / "manifest.json").stat().st_mtime,
                     getattr(source, "fracs", None))


@st.cache_data(show_spinner=False)
def _table(folder: str, name: str, stamp: float) -> pd.DataFrame:
    from explorer.results.bundle import Bundle

    return Bundle(Path(folder)).table(name)


def table(source: Bundle, name: str) -> pd.DataFrame:
    with errors(f"Reading the {name} table"):
        return _table(str(source.folder), name, (source.folder / "manifest.json").stat().st_mtime)


@st.cache_resource(show_spinner=False)
def _family(path: str, stamp: float) -> Family:
    from explorer.checkpoints.family import load_family

    family = load_family(path)
    if all(source.kind != "hub" for source in family.sources.values()):
        family.tensor_names  # validate local checkpoints once; hub ones download only when an action needs them
    return family


@st.cache_data(show_spinner=False)
def _changed_members(path: str, stamp: float, folder: str, manifest_stamp: float) -> list[str]:
    from explorer.results.bundle import Bundle

    return Bundle(Path(folder)).changed_members(_family(path, stamp))


def checkpoints(results: Bundle | None = None) -> tuple[Family | None, str | None]:
    """The chosen family with its checkpoints, or None and why live computation is unavailable. Checked when a
    page loads, so that a live action can be disabled up front instead of failing when clicked. With `results`,
    checkpoints other than those the results were computed from are refused too: what is computed live is drawn
    beside the precomputed results and must compare like with like."""
    path = st.session_state["family"]  # chosen by the picker that bundle() drew
    stamp = Path(path).stat().st_mtime if Path(path).exists() else 0.0
    try:
        family = _family(path, stamp)
    except ExplorerError as exc:
        if Path(path).resolve() == DEMO.resolve():
            return None, f"Needs the demo's checkpoints (cache/models/demo/), which are not built here. {BUILD_HINT}"
        return None, f"Needs the family's checkpoints, which are not available here: {exc}."
    if results is not None:
        with errors("Checking the checkpoints against the precomputed results"):
            changed = _changed_members(path, stamp, str(results.folder),
                                       (results.folder / "manifest.json").stat().st_mtime)
        if changed:
            return None, (f"The checkpoints here are not the ones these results were computed from ({', '.join(changed)}"
                          f" differ{'s' if len(changed) == 1 else ''} from the fingerprints in the manifest), so a "
                          "live result would not compare like with like. A rebuild on another kind of CPU can give "
                          "other weights (docs/demo.md); run `python -m explorer precompute` on these checkpoints "
                          "to use them.")
    return family, None


def live_button(label: str, key: str, family: Family | None, problem: str | None) -> bool:
    """A live action's button: disabled, with the reason and how to fix it, when there are no checkpoints."""
    clicked = st.button(label, key=key, type="primary", disabled=family is None)
    if problem:
        st.caption(problem)
    return clicked and family is not None


def download(frame: pd.DataFrame, label: str, filename: str, key: str) -> None:
    st.download_button(f"Download {label} (CSV)", frame.to_csv(index=False).encode(), filename, "text/csv", key=key)


def progress_callback(bar):
    return lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0), text=text)
