"""The report a researcher reads: its page from one small tuned study (verdict first, a figure per recorded
currency behind a switch, budgets in budget order, arm cards linked to method cards, runs.csv beside it),
rendered in a real headless Chromium: every image loads, nothing is logged, nothing is requested, the switch
switches; and the progress lines the study printed while it ran off a terminal."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from algospeed.core.currency import Currency
from algospeed.study.figures import COST_AXES
from algospeed.study.report import analyse, render_html, write_report
from algospeed.study.runner import run_study
from algospeed.study.spec import validate_study_spec

pytestmark = pytest.mark.slow  # one small tuned study, run once for the module

STUDY = {
    "name": "<b>report & co",
    "workload": "digits",
    "arms": {"baseline": [], "smooth <i>": ["label_smoothing:smoothing=0.05"]},
    "budgets": ["12ba", "6ba"],  # string order is not budget order
    "seeds": 1,
    "eval_interval": "0.25dur",
    "currency": "reference",
    "tuning": {"trials": 1, "budget": "6ba", "space": {"lr": {"log": [1.0e-3, 1.0e-2]}}},
}
LINE = re.compile(r"study \d\d:\d\d:\d\d: (\d+)/(\d+) done, (\d+) running, (\d+) left, (\d+) failed, ETA \S+")
CHROMIUM_FLAGS = (  # what works here: as root, offline, without a GPU, with a fresh profile added
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


@dataclass(frozen=True)
class Study:
    folder: Path
    page: str
    progress: str  # what the study printed on a console that is not a terminal


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """The study, run once per test session: pytest-xdist's workers share the first one's (their temporary
    folders lie side by side in the session's), the first to take the lock runs it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    folder = shared / "report-study"
    with (shared / "report-study.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "progress.txt").exists():
            shown = io.StringIO()
            run_study(validate_study_spec(STUDY), folder, workers=1, console=Console(file=shown, width=80)).close()
            write_report(folder)
            (folder / "progress.txt").write_text(shown.getvalue())
    return Study(folder, (folder / "report.html").read_text(), (folder / "progress.txt").read_text())


def test_a_redirected_study_prints_a_line_per_finished_run_with_true_counts(study: Study) -> None:
    counts = [tuple(map(int, LINE.match(line).groups())) for line in study.progress.splitlines()]  # type: ignore[union-attr]
    assert len(counts) >= 7, study.progress  # one at the start, one per run (2 trials, 2 x 2 cells)
    assert all(total == 6 and running <= 1 and done + running + left == 6 for done, total, running, left, _ in counts)
    assert {done for done, *_ in counts} == set(range(7)) and "\x1b[" not in study.progress


def test_the_page_puts_the_verdict_first_and_escapes_every_study_string(study: Study) -> None:
    page = study.page
    assert page.index('class="verdict"') < page.index("Fairness warnings") < page.index('id="tradeoff"')
    assert "&lt;b&gt;report &amp; co" in page and "<b>report" not in page
    assert "smooth &lt;i&gt;" in page and "smooth <i>" not in page
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page
    assert not re.search(r"(src|href)=\"(?!data:|#|runs\.csv|summary\.md)", page)  # nothing outside the page
    assert "<script" not in page


def test_the_page_offers_runs_csv_beside_it(study: Study) -> None:
    assert '<a href="runs.csv" download>' in study.page
    with (study.folder / "runs.csv").open() as file:
        assert len({row["key"] for row in csv.DictReader(file)}) == 6  # every run: 2 trials, 2 arms x 2 budgets


def test_final_quality_is_tabled_in_budget_order(study: Study) -> None:
    quality = study.page[study.page.index('id="quality"') :]
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", quality).group(1)  # type: ignore[union-attr]
    assert re.findall(r"<th>(.*?)</th>", header) == ["arm", "6ba", "12ba"]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", quality.split("</table>")[0])
    assert [row[0] for row in rows] == ["baseline", "smooth &lt;i&gt;"]
    assert all(re.fullmatch(r"\d\.\d+ / \d\.\d+", cell) for row in rows for cell in row[1:])


def test_one_tradeoff_figure_per_recorded_currency_the_judged_one_checked(study: Study) -> None:
    report = analyse(study.folder)
    shown = [tradeoff.currency for tradeoff in report.tradeoffs]
    assert shown[0] is Currency.REFERENCE and set(shown) == {
        Currency.REFERENCE,
        Currency.TRAIN_SECONDS,
        Currency.FLOPS,
        Currency.SAMPLES,
        Currency.STEPS,
    }
    assert {u.currency for u in report.unrecorded} == {Currency.TOKENS, Currency.ENERGY}
    for currency in shown:
        assert study.page.count(f'<figure id="tradeoff-{currency.value}"><img ') == 1
    assert re.search(r'id="currency-reference" value="reference" checked>', study.page)
    assert "<code>tokens</code>: no run spent any" in study.page
    rejudged = render_html(analyse(study.folder, "flops"))
    assert re.search(r'id="currency-flops" value="flops" checked>', rejudged)


def test_every_currency_has_an_axis_with_its_unit() -> None:
    assert set(COST_AXES) == set(Currency)
    assert all(re.search(r"\(.+\)$", label) for label in COST_AXES.values())


def test_arm_cards_link_each_method_to_its_card(study: Study) -> None:
    page = study.page
    links = re.findall(r'<a href="#(method-\d+)">([^<]+)</a>', page)
    assert links == [("method-0", "label_smoothing:smoothing=0.05")]
    card = page[page.index('id="method-0"') :]
    assert "label_smoothing" in card[:200] and "settings (label_smoothing:KEY=VALUE" in card
    arms = page[page.index('id="arms"') : page.index('id="tuning"')]
    assert arms.count('<article class="arm"') == 2 and "tuned: lr=" in arms and "effective hyperparameters" in arms
    assert "optimizer=SGD" in arms  # what the runs really trained with


def _browser(profile: Path):
    """Debian's chromium through its chromedriver, offline, with a fresh profile, logging the console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or ""
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "chromedriver"))


def _shown_figures(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        f.get_attribute("id") for f in driver.find_elements(By.CSS_SELECTOR, ".figures > figure") if f.is_displayed()
    ]


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs a browser: apt-get install chromium chromium-driver (the README's test command and CI install them)",
)
def test_the_report_renders_in_a_real_browser(study: Study, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = _browser(Path(tempfile.mkdtemp(dir=tmp_path)))
    try:
        driver.get((study.folder / "report.html").as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) == 5 + 3, images  # five currencies, time to target, tuning, exploratory speedups
        assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images
        assert _shown_figures(driver) == ["tradeoff-reference"]
        driver.find_element(By.CSS_SELECTOR, 'label[for="currency-flops"]').click()
        assert _shown_figures(driver) == ["tradeoff-flops"]
        assert driver.find_element(By.ID, "currency-flops").is_selected()
        assert driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
        assert driver.get_log("browser") == []  # no console message at all: no error, no blocked request
        driver.execute_script("window.scrollTo(0, 0)")
        driver.set_window_size(1280, driver.execute_script("return document.documentElement.scrollHeight"))
        screenshot = Path(os.environ.get("REPORT_SCREENSHOT", tmp_path / "report.png")).resolve()
        assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        print(f"report screenshot: {screenshot}")
    finally:
        driver.quit()
