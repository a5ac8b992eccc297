"""The findings page's numbers come from the runs (pipeline/report/findings.py)."""

import json

import numpy as np
import pytest

from pipeline.report.findings import FindingsError, fill_findings
from pipeline.report.paired import paired_t
from pipeline.report.summary import run_name
from tests.test_paper_tables import fake_runs

SEEDS = [0, 1, 2]


def runs_with_mining():
    runs = fake_runs(lambda e, s: 0.30 + 0.01 * s + 0.02 * (e == "default") * (s != 1))
    for s in SEEDS:
        runs[run_name("default", s)]["mining"] = {"pairs": 8800 + 10 * s, "unique_nouns": 39,
                                                  "precision": 0.54 + 0.03 * s}
    return runs


def fill(text, runs=None, seeds=SEEDS, root=None):
    return fill_findings(text, runs or runs_with_mining(), seeds, root)


def test_each_expression_is_its_formula_over_the_seeds():
    runs = runs_with_mining()
    a = np.array([0.32, 0.31, 0.34])  # default: +0.02 on seeds 0 and 2
    b = np.array([0.30, 0.31, 0.32])
    assert fill("{{diff default base world_full}}") == f"{(a - b).mean() * 100:+.1f}" == "+1.3"
    assert fill("{{wins default base world_full}}") == "2/3"
    p = paired_t(list(a), list(b))[1]
    assert fill("{{p default base world_full}}") == f"{p:.3f}"
    assert fill("{{mean default world_things}}") == "32.3"
    assert fill("{{values base/clip world_full}}") == "30.0, 31.0, 32.0"
    assert fill("{{values default world_full @1,2}}") == "31.0, 34.0"
    assert fill("{{mining default pairs}} at {{mining default precision}}") == \
        "8,800-8,820 at 0.54-0.60"
    assert fill("{{mining default unique_nouns}}") == "39"
    assert fill("seeds {{ seeds }} ({{nseeds}})") == "seeds 0, 1, 2 (3)"
    verdict_counts = fill("{{checks strict}} {{checks paired}} {{checks opposite}} "
                          "{{checks all}}", runs)
    assert verdict_counts.split()[-1] == "56"


def test_committed_files_are_read_relative_to_the_root(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"ensemble": {"miou": 0.4279}}))
    (tmp_path / "l.csv").write_text("step,loss\n0,3.2\n1,3.0\n")
    assert fill("{{points m.json ensemble.miou}}", root=tmp_path) == "42.8"
    assert fill("{{csv l.csv loss 0}} to {{csv l.csv loss -1}}", root=tmp_path) == "3.2 to 3.0"


@pytest.mark.parametrize("text, said", [
    ("{{diff default nosuch world_full}}", "no world_full value of nosuch on seed 0"),
    ("{{values default world_full @7}}", "on seed 7"),
    ("{{median default world_full}}", "unknown expression"),
    ("{{diff default}}", "wrong arguments"),
    ("{{mining base pairs}}", "no mining pairs of base"),
])
def test_a_number_the_runs_cannot_give_stops_the_render_naming_it(text, said):
    with pytest.raises(FindingsError, match=said):
        fill(text)



def test_the_committed_findings_cite_only_runs_that_exist():
    """Every expression of the committed template evaluates on the committed runs (the
    render test compares the page itself), and the page keeps no unrendered braces."""
    from reports.paper_tables import FINDINGS, OUT

    page = (OUT / "paper_tables_findings.md").read_text()
    assert "{{" not in page and "}}" not in page
    assert FINDINGS.read_text().count("{{") > 100  # the numbers are expressions


def test_verdict_gives_both_rules_of_the_report():
    """A constant one-point lead on seeds far apart: inside the spread, certain when
    paired; the reverse claim is opposite by the paired rule."""
    runs = fake_runs(lambda e, s: 0.30 + 0.05 * s + 0.01 * (e == "default"))
    assert fill("{{verdict default base world_full}}", runs) == \
        "strict: within spread, paired: reproduced"
    assert fill("{{verdict base default world_full}}", runs) == \
        "strict: within spread, paired: opposite"
    assert fill("{{verdict default/clip base/clip world_things}}", runs).startswith("strict: ")
