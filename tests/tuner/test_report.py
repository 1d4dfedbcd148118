"""``tuner report``: the HTML page of a study, checked by parsing it (no browser needed)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli
from search_spaces.spec import load_spec
from tuner.pareto import load_study, study_front
from tuner.report import drawn_trials, format_value, render_report
from tuner.study import run_search

REPO = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """What the checks need: every div id, script tags (with their src), the front table's rows,
    the breakdown details' ids, and every URL an element points at."""

    def __init__(self) -> None:
        super().__init__()
        self.div_ids: list[str] = []
        self.scripts: list[dict] = []
        self.front_rows: list[int] = []
        self.details: list[str] = []
        self.urls: list[str] = []
        self._in_script = False
        self._script_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("id"):
            self.div_ids.append(str(a["id"]))
        if tag == "script":
            self._in_script = True
            self._script_text = []
            self.scripts.append({"src": a.get("src"), "length": 0})
        if tag == "tr" and a.get("data-trial") is not None:
            self.front_rows.append(int(str(a["data-trial"])))
        if tag == "details" and a.get("id"):
            self.details.append(str(a["id"]))
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(str(a[key]))

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self._script_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script:
            self._in_script = False
            self.scripts[-1]["text"] = "".join(self._script_text)
            self.scripts[-1]["length"] = len(self.scripts[-1]["text"])


@pytest.fixture(scope="module")
def palm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 60-trial study of the shipped PaLM spec (three objectives, a memory constraint)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'palm.db'}"
    run_search(load_spec(str(REPO / "studies" / "palm-540b-tpu-v4.yaml")), url, trials=60)
    return url


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def test_report_page_is_offline_with_one_plotly_and_one_div_per_chart(palm: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report.html"
    code, stdout, err = run_cli(capsys, "report", "palm-540b-tpu-v4", "--storage", palm, "-o", str(out))
    assert code == 0, err
    assert "wrote" in stdout and "8 charts" in stdout
    # Again: the page is kept unless --force (as tuner export -o and tuner init).
    code, stdout, err = run_cli(capsys, "report", "palm-540b-tpu-v4", "--storage", palm, "-o", str(out))
    assert code == 2 and "--force" in err and stdout == "", err
    code, stdout, err = run_cli(capsys, "report", "palm-540b-tpu-v4", "--storage", palm, "-o", str(out), "--force")
    assert code == 0 and "8 charts" in stdout, err
    text = out.read_text(encoding="utf-8")
    page = parse(text)

    # plotly.js is embedded once, inline; no script is loaded from anywhere.
    assert all(s["src"] is None for s in page.scripts)
    big = [s for s in page.scripts if s["length"] > 1_000_000]
    assert len(big) == 1
    assert "plotly.js" in big[0]["text"][:500]
    # Nothing outside plotly.js itself (whose defaults name its CDN, for map tiles this page does
    # not draw) refers to a CDN or any other remote resource.
    rest = text.replace(big[0]["text"], "")
    assert not re.search(r"cdn\.plot\.ly|cdnjs|jsdelivr|unpkg", rest)
    assert [u for u in page.urls if u.startswith(("http:", "https:", "//"))] == []

    # One div per chart: the Pareto front, the parallel coordinates, per objective (three) an
    # importance chart and an optimization history.
    figures = sorted(i for i in page.div_ids if i.startswith("fig-"))
    expected = ["fig-pareto", "fig-parallel"]
    expected += [f"fig-importance-{i}" for i in range(3)] + [f"fig-history-{i}" for i in range(3)]
    assert figures == sorted(expected)
    assert len(set(page.div_ids)) == len(page.div_ids)

    # The front table is the front, in its order; each front trial has its breakdown.
    front = study_front(load_study("palm-540b-tpu-v4", palm))
    assert front.trials
    assert page.front_rows == [t.number for t in front.trials]
    assert page.details == [f"trial-{t.number}" for t in front.trials]
    for section in ("prefill", "decode", "memory"):
        assert f"<h4>{section}</h4>" in text
    # Units from the metric registry in the headers, human units in the cells.
    assert "decode.step_latency_s [s]" in text and "chip-s/token" in text
    assert re.search(r">\d[\d.]* (ms|s|µs)</td>", text)


def test_large_study_is_thinned_but_keeps_the_front(palm: str) -> None:
    study = load_study("palm-540b-tpu-v4", palm)
    front = study_front(study)
    complete = study.get_trials(deepcopy=False)
    drawn = drawn_trials(complete, front, max_points=len(front.trials) + 5)
    numbers = {t.number for t in drawn}
    assert {t.number for t in front.trials} <= numbers
    assert len(drawn) == len(front.trials) + 5
    assert all(t.user_attrs == {} for t in drawn)  # the estimate is not repeated in hover text
    text, counts = render_report(study, max_points=len(front.trials) + 5, max_lines=10)
    assert counts["n_drawn"] == len(front.trials) + 5 and counts["n_trials"] == 60
    assert "The charts draw" in text
    assert parse(text).front_rows == [t.number for t in front.trials]


def test_report_of_an_unknown_study_is_one_error_line(palm: str, tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "report", "nope", "--storage", palm, "-o", str(tmp_path / "r.html"))
    assert code == 2 and "nope" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (0.0211, "s", "21.1 ms"),
        (2.5e-5, "s", "25 µs"),
        (34359738368.0, "B", "32 GiB"),
        (0.256, "fraction", "25.6 %"),
        (4203.05, "tokens/s", "4.2 ktokens/s"),
        (0.01048, "chip-s/token", "0.01048 chip-s/token"),
        (64, "chips", "64 chips"),
        (True, "", "True"),
    ],
)
def test_format_value(value: object, unit: str, shown: str) -> None:
    assert format_value(value, unit) == shown


def test_the_front_tables_headers_name_the_unit_of_their_cells(palm: str) -> None:
    """The front table's header said the registry's "[s]" over cells each formatted in its own
    unit ("21.1 ms"): one unit a column now, named in the header, every cell a number in it (its
    raw value, in the registry's unit, in the cell's title)."""
    from tuner.report import front_table

    front = study_front(load_study("palm-540b-tpu-v4", palm))
    page = front_table(front)
    heads = re.findall(r"<th>([^<]*)</th>", page)
    latency = next(h for h in heads if h.startswith("decode.step_latency_s"))
    assert latency == "decode.step_latency_s [ms] (min)", heads
    column = heads.index(latency)
    objective = column - (len(heads) - len(front.objective_names))  # the objectives come last
    rows = re.findall(r"<tr data-trial=\"\d+\">(.*?)</tr>", page)
    assert len(rows) == len(front.trials)
    for row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        raw = float(re.findall(r'title="([^"]+)"', row)[objective])  # seconds, the registry's unit
        assert float(cells[column].replace(",", "")) == pytest.approx(raw * 1e3, rel=1e-3)


@pytest.fixture(scope="module")
def palm_3000(tmp_path_factory: pytest.TempPathFactory) -> str:
    """3,000 compact trials of the PaLM spec, batch widened to 1..10 as bench/bench_reads.py
    widens it, written by the exhaustive sampler (each with its points-table row)."""
    import yaml

    folder = tmp_path_factory.mktemp("report-large")
    data = yaml.safe_load((REPO / "studies" / "palm-540b-tpu-v4.yaml").read_text(encoding="utf-8"))
    data["space"]["batch"] = list(range(1, 11))
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    url = f"sqlite:///{folder / 'palm.db'}"
    run_search(load_spec(str(spec)), url, trials=3000, sampler="exhaustive")
    return url


def test_a_large_database_study_reads_whole_only_the_trials_it_draws(palm_3000: str, monkeypatch) -> None:
    """`tuner report` read every trial whole (Optuna's get_trials, each compact trial recomputed)
    before it drew max_points of them: 188 of 203 s at 111,450 trials (README). From the points
    table only the drawn trials and the front are made whole now."""
    from tuner import compact

    made_whole: list[int] = []
    hydrate = compact.Hydrator.hydrate

    def counting(self, trials, breakdown=True):  # type: ignore[no-untyped-def]
        made_whole.extend(t.number for t in trials if compact.is_compact(t))
        return hydrate(self, trials, breakdown)

    monkeypatch.setattr(compact.Hydrator, "hydrate", counting)
    study = load_study("palm-540b-tpu-v4", palm_3000)
    front = study_front(study)
    made_whole.clear()
    max_points, max_lines = len(front.trials) + 40, 15
    text, counts = render_report(study, max_points=max_points, max_lines=max_lines)
    assert counts["n_trials"] == 3000 and counts["n_drawn"] == max_points
    assert counts["n_front"] == len(front.trials)
    # The front (read by study_front), the 40 others drawn and at most 15 more parallel lines;
    # a whole read made all 3,000 whole.
    assert len(made_whole) <= len(front.trials) + 40 + 15, len(made_whole)
    assert len(set(made_whole)) == len(made_whole)  # none twice
    assert parse(text).front_rows == [t.number for t in front.trials]


def test_the_thinned_read_draws_the_page_a_whole_read_draws(palm_3000: str, monkeypatch) -> None:
    """Same sample (the same seeded rule over the same trials in the same order), same charts,
    same counts, whether every trial is read whole (no points table) or only the drawn ones."""
    from tuner import optuna_internals

    study = load_study("palm-540b-tpu-v4", palm_3000)
    front = study_front(study)
    thinned, thinned_counts = render_report(study, max_points=len(front.trials) + 40, max_lines=15)
    monkeypatch.setattr(optuna_internals, "complete_point_rows", lambda *args: None)
    whole, whole_counts = render_report(study, max_points=len(front.trials) + 40, max_lines=15)
    assert thinned_counts == whole_counts
    assert thinned == whole


@pytest.mark.parametrize("max_points", ["0", "-1"])
def test_max_points_below_one_is_refused_before_the_study_is_read(max_points: str, tmp_path: Path, capsys) -> None:
    """--max-points 0 was read as "not given" (`max_points or 3000`): the page drew 3,000 trials a
    chart and exit 0, the value silently ignored. Refused first, so no study or database is needed."""
    out_path = tmp_path / "r.html"
    code, out, err = run_cli(
        capsys, "report", "nope", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "-o", str(out_path),
        "--max-points", max_points,
    )  # fmt: skip
    line = assert_one_error_line(code, out, err, ("--max-points",))
    assert f"got {max_points}" in line and not out_path.exists()


def test_a_study_with_no_feasible_trial_says_so_in_the_page_not_in_optunas_log(tmp_path: Path, capsys) -> None:
    """Optuna's Pareto plot logged "[W ...] Your study does not have any completed and feasible
    trials." on stderr beside the report's own line (session 48); the chart's heading says it.
    Optuna's own handler writes to the stderr of its import, so the log is read from its logger."""
    import logging

    class Kept(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    text = (REPO / "studies" / "llama-3-8b-l4.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^name: .*$", "name: none-feasible", text)
    text = re.sub(r"max_tpot_s: [\d.]+", "max_tpot_s: 0.000001", text)  # no deployment decodes in 1 us
    spec_path = tmp_path / "none.yaml"
    spec_path.write_text(text, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'none.db'}"
    run_search(load_spec(str(spec_path)), url, trials=10)
    assert study_front(load_study("none-feasible", url)).n_feasible == 0
    out = tmp_path / "none.html"
    kept = Kept()
    optuna_log = logging.getLogger("optuna")  # Optuna's loggers propagate to it, not beyond
    optuna_log.addHandler(kept)
    try:
        code, stdout, err = run_cli(capsys, "report", "none-feasible", "--storage", url, "-o", str(out))
    finally:
        optuna_log.removeHandler(kept)
    assert code == 0, err
    assert "0 front trials" in stdout
    assert not [m for m in kept.messages if "feasible trials" in m], kept.messages
    assert "no feasible trial yet: every point is grey" in out.read_text(encoding="utf-8")
