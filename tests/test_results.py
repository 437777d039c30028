"""Results JSON: round trip, strict JSON (no NaN tokens), and clear errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conformance.backends import resolve
from conformance.case import parse_id
from conformance.diff import Tolerance
from conformance.dtypes import round_to
from conformance.results import SCHEMA, RunResults, backend_entry, counts
from conformance.runner import Runner
from tests.planted import UnflippedWeight


class NaNBackend(UnflippedWeight):
    name = "planted-nan"

    def run(self, case, inputs):
        out = round_to(self.reference(case, inputs), case.dtype).copy()
        out.flat[0] = np.nan
        return out


def _results() -> RunResults:
    backends = resolve(["numpy-ref"]) + [UnflippedWeight(), NaNBackend()]
    runner = Runner(backends)
    records = []
    for cid in ["conv_transpose2d-n1-c2x3-s3-k3-st2-p1-op1-f16", "conv1d-n1-c1x1-s5-k3-st0-f32"]:
        records += runner.run_case(parse_id(cid))
    return RunResults({"seed": 1}, [backend_entry(b) for b in backends], records)


def test_round_trip(tmp_path):
    results = _results()
    path = tmp_path / "r.json"
    results.write(path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    data = json.loads(text)
    assert data["schema"] == SCHEMA
    back = RunResults.read(path)
    assert [(r.case_id, r.backend, r.verdict) for r in back.records] == [
        (r.case_id, r.backend, r.verdict) for r in results.records
    ]
    assert back.records[1].backend == "planted-unflipped"
    assert back.records[1].metrics == results.records[1].metrics
    nan_rec = back.records[2]
    assert nan_rec.verdict == "nan-inf-mismatch"
    assert np.isnan(nan_rec.metrics.worst.got)  # "nan" in the file, NaN again after reading
    assert back.records[3].reference_error == results.records[3].reference_error
    assert counts(back.records) == counts(results.records)


def test_round_trip_keeps_proven_bound_only(tmp_path):
    backends = [UnflippedWeight()]
    runner = Runner(backends, tolerance=Tolerance(2.0, statistical=False))
    records = runner.run_case(parse_id("conv_transpose2d-n1-c2x3-s3-k3-st2-p1-op1-f16"))
    settings = {"tolerance": {"factor": 2.0, "accumulation": "float32", "statistical": False}}
    path = tmp_path / "r.json"
    RunResults(settings, [backend_entry(b) for b in backends], records).write(path)
    back = RunResults.read(path)
    assert back.records == records and back.records[0].tolerance_statistical is False
    assert back.settings["tolerance"]["statistical"] is False
    assert back.records[0].replay.endswith(" --tolerance-factor 2 --proven-bound-only")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="other/1"), "field 'schema'"),
        (lambda d: d.pop("records"), "missing field 'records'"),
        (lambda d: d["records"][0].update(verdict="exploded"), "records[0].verdict"),
        (lambda d: d["records"][1].pop("case_id"), "records[1] is missing field 'case_id'"),
        (lambda d: d["backends"][0].update(available="yes"), "backends[0].available"),
        (lambda d: d["records"][0].update(metrics={"bogus": 1}), "records[0].metrics"),
        (lambda d: d["records"][0].update(seconds="1 s"), "records[0].seconds has the wrong"),
        (lambda d: d["records"][2].update(fixed="no"), "records[2].fixed has the wrong type"),
        (lambda d: d["records"][1].update(detail=["x"]), "records[1].detail has the wrong"),
        (lambda d: d["records"][1].update(case=[1]), "records[1].case has the wrong type"),
        (
            lambda d: d["records"][1].update(tolerance_statistical="no"),
            "records[1].tolerance_statistical has the wrong type (str)",
        ),
        (lambda d: d.update(settings=[]), "results.settings has the wrong type (list)"),
    ],
)
def test_malformed_results_name_the_field(tmp_path, mutate, message):
    data = _results().to_json()
    data["records"][0]["metrics"] = data["records"][0]["metrics"] or {}
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="bad.json") as err:
        RunResults.read(path)
    assert message in str(err.value)


def test_not_json_at_all(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read results JSON"):
        RunResults.read(path)
