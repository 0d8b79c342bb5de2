"""Spot-check a new fine-tuned checkpoint against a family: its update's spectra, overlaps and energy curve."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.checkpoints.family import Family, validate, with_member
from explorer.core.progress import Callback
from explorer.weights.mso import update_mso
from explorer.weights.projection import projection_stats
from explorer.weights.spectra import spectra, summarize

CANDIDATE = "candidate"
REFERENCES = ("useful", "harmful")
ETA = 0.5


@dataclass
class SpotCheck:
    family: Family  # the family with the candidate as one more fine-tuned member
    summary: pd.DataFrame  # spectrum statistics of the candidate's update
    overlaps: pd.DataFrame  # mean MSO over weight matrices against eta, per reference update
    energy: pd.DataFrame  # energy kept against rho in each subspace
    matrices: pd.DataFrame  # MSO of each weight matrix at ETA, per reference (what a verdict rests on)

    @property
    def references(self) -> list[str]:
        return [r for r in REFERENCES if r in self.family.updates]


def spot_check(family: Family, spec: str, callback: Callback | None = None) -> SpotCheck:
    """`spec` is a path, hub id or LoRA adapter fine-tuned from the family's aligned model."""
    extended = with_member(family, CANDIDATE, spec)
    validate(extended)
    summary = summarize(spectra(extended, CANDIDATE, callback))
    references = [r for r in (*REFERENCES, "alignment") if r in extended.updates]
    tables = {b: t[t["cols"] > 1] for (_, b), t in  # weight matrices; vectors have no subspace to speak of
              update_mso(extended, [(CANDIDATE, r) for r in references], callback=callback).items()}
    overlaps = pd.concat([t.groupby("energy_frac", as_index=False)[["mso", "mso_random"]].mean().assign(reference=b)
                          for b, t in tables.items()], ignore_index=True)
    matrices = pd.concat([t.loc[np.isclose(t["energy_frac"], ETA), ["group", "mso", "mso_random"]].assign(reference=b)
                          for b, t in tables.items()], ignore_index=True)
    energy = projection_stats(extended, CANDIDATE, callback=callback).energy_curve(np.round(np.arange(0.05, 1.0, 0.05), 2))
    return SpotCheck(extended, summary, overlaps, energy, matrices)
