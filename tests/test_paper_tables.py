"""The paper-tables report: experiments, claims and their verdicts over seeds."""

import json

import numpy as np
import pytest
import yaml

import reports.paper_tables as make_tables
from pipeline.params import parse_params
from pipeline.params.checks import check_across_sections
from pipeline.params.file import read_params_yaml
from pipeline.report.ablations import EXPERIMENTS, TABLES, table_experiments
from pipeline.report.summary import (
    SPLITS,
    Stat,
    all_verdicts,
    claim_verdict,
    experiments_in,
    report_markdown,
    report_png,
    run_name,
    seed_of,
    trimmed,
)
from tests.conftest import REPO


def eval_report(miou: float) -> dict:
    part = {"miou_d2_legacy": miou, "miou": miou}
    return {"dataset": "x", "images": 3,
            **{v: {**part, "seen": part, "unseen": part, "per_class_iou": {"a": miou}}
               for v in ("maskformer", "clip", "ensemble", "gt_masks_clip",
                         "proposals_oracle")}}


def fake_runs(value, seeds=(0, 1, 2)) -> dict:
    """value(experiment, seed) -> every variant's mIoU on both splits."""
    return {run_name(e, s): trimmed({f"metrics/eval/{split}.json": eval_report(value(e, s))
                                     for split in SPLITS})
            for e in EXPERIMENTS for s in seeds}


def test_every_row_names_an_experiment_and_every_claim_two_rows():
    for t in TABLES:
        labels = [r.label for r in t.rows]
        assert len(set(labels)) == len(labels)
        assert all(r.experiment in EXPERIMENTS for r in t.rows)
        assert all(c.better in labels and c.worse in labels for c in t.claims)
        # each claim is the paper's own direction
        paper = {r.label: r.paper for r in t.rows}
        assert all(paper[c.better] > paper[c.worse] for c in t.claims), t.key
    assert table_experiments()[0] == "default" and "depth12_no_ft" in table_experiments()


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_passes_check_params(name):
    """As `dvc exp run -S key=value` sets them: values parsed as YAML, into params.yaml."""
    raw = read_params_yaml(REPO / "params.yaml")
    for key, value in {"data.seed": "2", **EXPERIMENTS[name]}.items():
        section, field = key.split(".")
        assert field in raw[section], key
        raw[section][field] = yaml.safe_load(value)
    params = parse_params(raw, complete=True)
    check_across_sections(params)  # mpt.depth 12 needs the 12-block CLIP
    assert params.data.seed == 2


def test_a_claim_is_reproduced_only_beyond_both_spreads():
    spread = {"a": (0.50, 0.52, 0.54), "b": (0.45, 0.47, 0.49)}  # half ranges 0.02 each
    t = TABLES[3]  # table3: base, MPT only, FT only, FT then MPT
    claim = t.claims[0]  # MPT only > base CLIP
    for gap, verdict in ((0.05, "reproduced"), (0.03, "within spread"),
                         (-0.05, "opposite")):
        def value(e, s, gap=gap):
            return spread["a"][s] if e == "mpt_only" else spread["b"][s] + 0.05 - gap
        v = claim_verdict(t, claim, fake_runs(value), "world_full", [0, 1, 2])
        assert v.difference == pytest.approx(gap) and v.spread == pytest.approx(0.04)
        assert v.verdict == verdict


def test_a_missing_seed_leaves_the_claim_not_run():
    runs = fake_runs(lambda e, s: 0.5)
    del runs[run_name("base", 2)]
    t = TABLES[3]
    assert claim_verdict(t, t.claims[0], runs, "world_full", [0, 1, 2]).verdict == "not run"
    v = claim_verdict(t, t.claims[0], runs, "world_full", [0, 1])
    assert v.difference == 0 and v.reproduced is None
    assert v.verdict == "not judged (2 of 3 seeds)"


def test_stat_is_mean_and_half_range():
    s = Stat((0.2, 0.5, 0.3))
    assert s.mean == pytest.approx(np.mean([0.2, 0.5, 0.3])) and s.spread == pytest.approx(0.15)
    assert s.cell() == "33.3 ± 15.0"


def exp_show_listing(runs: dict[str, dict]) -> list:
    """The shape of `dvc exp show --json` (DVC 3): baselines with their experiments."""
    return [{"rev": "workspace", "name": None, "data": {"metrics": {}}, "experiments": None},
            {"rev": "abc", "name": "main", "data": {"metrics": {}}, "experiments": [
                {"revs": [{"rev": f"r{i}", "name": name, "data": {"metrics": {
                    path: {"data": d} for path, d in metrics.items()}}}]}
                for i, (name, metrics) in enumerate(runs.items())]}]


def test_experiments_come_out_of_dvc_exp_show_json():
    raw = {"base-s0": {"metrics/eval/world_full.json": eval_report(0.3),
                       "metrics/mining.json": {"pairs": 5, "unique_nouns": 2,
                                               "precision_iou50": {"precision": 0.5}}}}
    got = experiments_in(exp_show_listing(raw))
    assert set(got) == {"base-s0"}
    t = trimmed(got["base-s0"])
    assert t["world_full"]["ensemble"] == {"all": 0.3, "seen": 0.3, "unseen": 0.3}
    assert "dataset" not in t["world_full"] and "world_things" not in t
    assert t["mining"] == {"pairs": 5, "unique_nouns": 2, "precision": 0.5}


def test_the_report_is_deterministic_and_names_every_table():
    runs = fake_runs(lambda e, s: 0.3 + 0.01 * s + 0.1 * (e == "default"))
    md = report_markdown(runs, [0, 1, 2], "# header")
    assert md == report_markdown(runs, [0, 1, 2], "# header")
    for t in TABLES:
        assert t.title in md
    checks = len(all_verdicts(runs, [0, 1, 2]))
    assert f"of {checks} judged claim checks reproduced** ({checks} checks in all" in md
    assert "| table3 | FT then MPT > FT only | +0.8 | world_full | +10.0 | 2.0 | 3/3 | " \
           "reproduced |" in md
    png = report_png(runs, [0, 1, 2])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == report_png(runs, [0, 1, 2])


def test_run_names_give_back_their_seed():
    assert seed_of(run_name("depth12_no_ft", 2)) == 2
    assert seed_of("exp-1a2b3") is None and seed_of("my-sweep") is None


def test_the_rendered_report_names_the_commits_its_runs_ran_at(tmp_path, monkeypatch):
    runs = fake_runs(lambda e, s: 0.3)
    saved = {name: {"metrics": m, "seconds": 60, "commit": ("a" if i % 2 else "b") * 40}
             for i, (name, m) in enumerate(runs.items())}
    monkeypatch.setattr(make_tables, "OUT", tmp_path)
    monkeypatch.setattr(make_tables, "RUNS", tmp_path / "runs.json")
    monkeypatch.setattr(make_tables, "OPEN_RUNS", tmp_path / "open_runs.json")
    monkeypatch.setattr(make_tables, "FINDINGS", tmp_path / "no_findings.template.md")
    (tmp_path / "runs.json").write_text(json.dumps(saved))
    make_tables.render(None)
    md = (tmp_path / "paper_tables.md").read_text()
    assert "No claim can be judged on Open mIoU yet: 0 of" in md
    assert f"{len(runs)} runs; their `dvc exp run` wall time on the machine that ran them: " \
           f"{len(runs)} minutes; run at commits aaaaaaa, bbbbbbb." in md


def test_the_committed_report_is_what_render_makes_of_the_committed_runs(tmp_path, monkeypatch):
    """reports/paper_tables.md and the findings are the committed runs.json rendered, to
    the byte: no number of either was edited by hand, and none is stale after a change to
    the rendering or to the runs."""
    committed = make_tables.OUT
    monkeypatch.setattr(make_tables, "OUT", tmp_path)  # RUNS stays the committed runs.json
    make_tables.render(None)
    for page in ("paper_tables.md", "paper_tables_findings.md"):  # findings: every number
        assert (tmp_path / page).read_text() == (committed / page).read_text(), page


def test_a_claim_that_rests_on_near_synonyms_changes_verdict_under_open_miou():
    """A beats B under mIoU on every seed, B beats A under Open mIoU (B's mistakes were
    near-synonyms): the Open mIoU section says the check changed; runs without Open mIoU
    leave the section saying so."""
    from pipeline.report.summary import open_claims_markdown

    def report(e, s):
        miou = 0.50 + 0.01 * s if e == "mpt_only" else 0.40 + 0.01 * s
        open_ = 0.52 + 0.01 * s if e == "mpt_only" else 0.60 + 0.01 * s
        r = eval_report(miou)
        for v in ("ensemble", "clip", "maskformer"):
            r[v]["open"] = {"miou_d2_legacy": open_, "miou": open_}
        r["open_similarity"] = {"similarity": "wordnet_path"}
        return r

    runs = {run_name(e, s): trimmed({f"metrics/eval/{split}.json": report(e, s)
                                     for split in SPLITS})
            for e in EXPERIMENTS for s in (0, 1, 2)}
    text = open_claims_markdown(runs, [0, 1, 2])
    row = next(line for line in text.splitlines() if "| MPT only > base CLIP | world_full" in line)
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3:5] == ["+10.0", "reproduced"]
    assert cells[6:8] == ["-8.0", "opposite"] and cells[9] == "**yes**"
    assert "Similarity: eval.open_similarity of each run (wordnet_path)" in text
    # the report takes the section from separate runs when given, over their own seeds
    md = report_markdown(fake_runs(lambda e, s: 0.5), [0, 1, 2], "", runs,
                         "36 runs somewhere")
    assert "From 36 runs somewhere: mIoU and Open mIoU of the same runs" in md
    assert "| MPT only > base CLIP | world_full | +10.0 | reproduced" in md
    assert "No claim can be judged on Open mIoU yet: 0 of" in open_claims_markdown(
        fake_runs(lambda e, s: 0.5), [0, 1, 2])
