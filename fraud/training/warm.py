"""The warm initial state of a bundle: recent history replayed through the featurizers' online path.

A stream scorer starting without a checkpoint then sees customer/terminal windows and sequence states
as of the training cutoff, not empty ones (``TrainConfig.warm_state_days``).
"""
from __future__ import annotations

import pandas as pd

from fraud import schema


def warm_state(bundle, df: pd.DataFrame, days: float, batch_size: int = 10_000):
    """The bundle's online state after replaying the last ``days`` days of ``df`` (the training history,
    labels already limited to those known at train-until) through the featurizers' online path."""
    ts = df[schema.TIMESTAMP]
    hist = df.loc[(ts >= ts.iloc[-1] - pd.Timedelta(days=days)).to_numpy()]
    state = bundle.new_state()
    for i in range(0, len(hist), batch_size):
        bundle.features_online(hist.iloc[i:i + batch_size], state)
    state.last_timestamp = hist[schema.TIMESTAMP].iloc[-1] if len(hist) else None
    state.extra["warm_until"] = str(state.last_timestamp)
    return state
