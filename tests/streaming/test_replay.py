"""Replay encoding: events decode and validate back to the same canonical rows."""
from __future__ import annotations

import json

import pandas as pd

from fraud.schema import validate_records
from fraud.registry import parse_model_uri
from streaming.replay import encode_events


def test_encode_events_roundtrip(tiny_frame):
    df = tiny_frame.assign(scenario=pd.Series([0, 1, 0, 0, 0, 2, 0, 0], dtype="int16"))
    values, keys = encode_events(df)
    assert keys == [c.encode() for c in df["customer_id"]]
    recs = [json.loads(v) for v in values]
    assert recs[0]["timestamp"].endswith("Z")
    rep = validate_records(recs, source="test")
    assert rep.ok
    pd.testing.assert_frame_equal(rep.valid[df.columns.tolist()], df.reset_index(drop=True), check_dtype=False)
    assert (rep.valid["timestamp"].to_numpy() == df["timestamp"].to_numpy()).all()
    no_labels, _ = encode_events(df, labels=False)
    assert "label" not in json.loads(no_labels[0]) and "scenario" not in json.loads(no_labels[0])


def test_parse_model_uri():
    assert parse_model_uri("models:/fraud-detector@champion") == ("fraud-detector", "champion", None)
    assert parse_model_uri("models:/fraud-detector/3") == ("fraud-detector", None, "3")
