"""report.html: one self-contained page, in the order a researcher asks: the verdict in one sentence, what
would void it, the speedups, the quality per budget, the tradeoff curves (a figure per recorded currency,
switched by radio buttons and CSS: no script, no font, no request leaves the page), then each arm's card, the
tuning, the methods' cards and the evidence behind it all. Every string from the study is escaped."""

from __future__ import annotations

from html import escape

from algospeed.cards.card import method_card
from algospeed.cards.render import card_text
from algospeed.errors import UsageError
from algospeed.study.ablation import ablation_html
from algospeed.study.figures import (
    arm_color,
    cost_axis,
    speedup_figure,
    time_to_target_figure,
    tradeoff_figure,
    tuning_figure,
)
from algospeed.study.findings import StudyReport
from algospeed.study.report_tables import (
    QUALITY_NOTE,
    SUMMARY_HEADER,
    TRIAL_HEADER,
    arm_hyperparameters,
    arm_speedup,
    budget_header,
    budget_rows,
    curve_rows,
    effective_lines,
    fmt,
    manifest_rows,
    plugin_rows,
    quality_header,
    quality_rows,
    seed_advice,
    speedup_text,
    summary_rows,
    trial_rows,
)

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
"""The page's Content-Security-Policy: images only from data: URIs, its own inline style, nothing else."""

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 62em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .3em .6em; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.1em; background: #eef5ff; border: 1px solid #7aa7e0; padding: .6em 1em; }
.warnings { background: #fff4e5; border: 1px solid #f0a020; padding: .5em 1em; }
.pending { color: #a00; font-weight: bold; } img { max-width: 100%; }
nav a { margin-right: .8em; } .note { color: #555; font-size: .9em; }
.switch > input { position: absolute; opacity: 0; }
.switch > label { display: inline-block; padding: .25em .8em; margin: 0 .3em .3em 0; border: 1px solid #7aa7e0;
  border-radius: 1em; cursor: pointer; }
.switch > input:focus-visible + label { outline: 2px solid #225; }
.figures > figure { display: none; margin: .5em 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(19em, 1fr)); gap: 1em; }
.arm { border: 1px solid #ccc; border-left: 6px solid; padding: .3em 1em; border-radius: 4px; }
.arm h3 { margin: .4em 0; } .arm dt { font-weight: bold; margin-top: .4em; }
.arm dd { margin-left: 0; overflow-wrap: anywhere; } .arm ul { padding-left: 1.2em; }
.method pre { white-space: pre-wrap; background: #f8f8f8; padding: .6em; border: 1px solid #ddd; }
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(alt: str, source: str | None) -> str:
    return "" if source is None else f'<img alt="{escape(alt)}" src="{source}">'


def _method_ids(report: StudyReport) -> dict[str, str]:
    """Each method the arms use, in order of first use, with the id of its card in the page."""
    names = dict.fromkeys(m.name for arm in report.spec.arms.values() for m in arm.methods)
    return {name: f"method-{index}" for index, name in enumerate(names)}


def currency_rules(report: StudyReport) -> str:
    """The CSS of the currency switch: the checked radio shows its currency's figure and lights its label."""
    return "\n".join(
        f"#currency-{key}:checked ~ .figures #tradeoff-{key} {{ display: block; }}\n"
        f"#currency-{key}:checked + label {{ background: #7aa7e0; color: #fff; }}"
        for key in (tradeoff.currency.value for tradeoff in report.tradeoffs)
    )


def currency_switch(report: StudyReport) -> str:
    """A figure per recorded currency, one shown at a time (see `currency_rules`), the judged currency first and
    checked; the currencies the runs did not record are named with why."""
    inputs, figures = [], []
    for index, tradeoff in enumerate(report.tradeoffs):
        key = tradeoff.currency.value
        label = cost_axis(tradeoff.currency) + (" (judged)" if index == 0 else "")
        checked = " checked" if index == 0 else ""
        inputs.append(
            f'<input type="radio" name="currency" id="currency-{key}" value="{key}"{checked}>'
            f'<label for="currency-{key}">{escape(label)}</label>'
        )
        figures.append(
            f'<figure id="tradeoff-{key}">{_image(f"tradeoff curves in {key}", tradeoff_figure(report, tradeoff))}'
            "</figure>"
        )
    missing = "".join(f"<li><code>{u.currency.value}</code>: {escape(u.reason)}</li>" for u in report.unrecorded)
    unrecorded = f"<p class='note'>Not recorded by these runs:</p><ul class='note'>{missing}</ul>" if missing else ""
    return (
        f'<div class="switch" role="radiogroup" aria-label="cost currency">{"".join(inputs)}'
        f'<div class="figures">{"".join(figures)}</div></div>{unrecorded}'
    )


def arm_cards(report: StudyReport) -> str:
    """One card per arm: its colour in the figures, speedup, seeds at the target, methods (linked to their
    cards), the hyperparameters it set or was tuned to, and what its runs really trained with."""
    ids = _method_ids(report)
    cards = []
    for arm, spec in report.spec.arms.items():
        summary = report.summaries.get(arm)
        reached = "no run finished"
        if summary is not None:
            median = summary.median_cost_to_target
            shown = "not reached" if median is None else f"{fmt(median)}, as {cost_axis(report.currency)}"
            reached = f"{summary.reached}/{summary.n_seeds}; median cost to it: {shown}"
        methods = ", ".join(f'<a href="#{ids[m.name]}">{escape(str(m))}</a>' for m in spec.methods) or "(none)"
        effective = "".join(f"<li>{escape(line)}</li>" for line in effective_lines(report, arm))
        role = " <small>(the baseline)</small>" if arm == report.spec.baseline else ""
        cards.append(
            f'<article class="arm" style="border-left-color: {arm_color(report, arm)}">'
            f"<h3>{escape(arm)}{role}</h3><dl>"
            f"<dt>speedup at the target</dt><dd>{escape(arm_speedup(report, arm))}</dd>"
            f"<dt>seeds at the target</dt><dd>{escape(reached)}</dd>"
            f"<dt>methods</dt><dd>{methods}</dd>"
            f"<dt>hyperparameters</dt><dd>{escape(arm_hyperparameters(report, arm))}</dd>"
            f"<dt>effective hyperparameters</dt><dd><ul>{effective}</ul></dd>"
            "</dl></article>"
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def method_cards(report: StudyReport) -> str:
    """The card of each method the arms use, as `algospeed methods show NAME` prints it."""
    sections = []
    for name, anchor in _method_ids(report).items():
        try:
            text = card_text(method_card(name))
        except UsageError:  # a plugin's method, and the plugin is not loaded here
            text = f"{name}: not registered here; `algospeed methods --plugin PLUGIN show {name}` prints its card"
        sections.append(
            f'<details class="method" id="{anchor}" open><summary><b>{escape(name)}</b></summary>'
            f"<pre>{escape(text)}</pre></details>"
        )
    return "".join(sections) or "<p>No arm uses a method.</p>"


def render_html(report: StudyReport) -> str:
    """The page (see the module docstring)."""
    spec = report.spec
    warnings = (
        "".join(f"<li><b>{escape(w.rule)}</b>: {escape(w.message)}</li>" for w in report.warnings) or "<li>none</li>"
    )
    plugins = _table(["plugin", "sha256 of its source"], plugin_rows(report)) if plugin_rows(report) else "<p>none</p>"
    pending = (
        f"<p class='pending'>{report.pending} run(s) have not finished; rerun the study to complete it.</p>"
        if report.pending
        else ""
    )
    advice = "".join(f"<li>{escape(line)}</li>" for line in seed_advice(report))
    trials = (
        f"{_image('tuning trials', tuning_figure(report))}{_table(TRIAL_HEADER, trial_rows(report))}"
        if report.trials
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Study {escape(spec.name)}</title>
<style>{STYLE}{currency_rules(report)}</style></head><body>
<h1>Study {escape(spec.name)}</h1>
<p class="verdict">{escape(report.verdict)}</p>
<p>Workload <code>{escape(spec.workload)}</code>; target {report.target:g} on the validation split;
budgets {escape(", ".join(spec.budgets))}; {len(spec.seeds)} seed(s) per arm and budget
({escape(", ".join(map(str, spec.seeds)))});
cost currency <code>{escape(report.currency)}</code>.</p>
<p>Download <a href="runs.csv" download>runs.csv</a> (every run: its settings, status, final costs and metrics)
or read <a href="summary.md">summary.md</a>; both lie beside this page.</p>
<nav><a href="#speedup">speedup</a><a href="#quality">quality</a><a href="#tradeoff">tradeoff curves</a>
<a href="#time-to-target">time to target</a><a href="#arms">arms</a><a href="#tuning">tuning</a>
<a href="#methods">method cards</a><a href="#exploratory">exploratory</a><a href="#environment">environment</a></nav>
{pending}
<div class="warnings"><h2>Fairness warnings</h2><ul>{warnings}</ul></div>
<h2 id="speedup">Speedup at the target</h2>
<p>Judged on the validation split; interval: {escape(report.interval_method)}.</p>
{_table(SUMMARY_HEADER, summary_rows(report))}
<ul>{advice}</ul>
<h2 id="quality">Final quality per arm and budget</h2>
<p class="note">{escape(QUALITY_NOTE)}.</p>
{_table(quality_header(report), quality_rows(report))}
{ablation_html(report, speedup_text)}
<h2 id="tradeoff">Tradeoff curves and Pareto frontier</h2>
<p class="note">Pick the currency the cost is counted in; the verdict is judged in the first.</p>
{currency_switch(report)}
<h2 id="time-to-target">Time to target</h2>
{_image("time to target", time_to_target_figure(report))}
{_table(budget_header(report), budget_rows(report))}
<h2 id="arms">Arms</h2>
<p class="note">Effective hyperparameters are read off each run's optimizer after every method set it up (a method's
own rescaling shows here); each method links to its card below.</p>
{arm_cards(report)}
<h2 id="tuning">Tuning</h2>
<p>{escape(report.ruleset)}.</p>
{trials}
<h2 id="methods">Method cards</h2>
{method_cards(report)}
<h2 id="exploratory">Speedup across qualities (exploratory)</h2>
<p>Only the speedup at the target fixed when the study was created is a claim; these are exploratory.</p>
{_image("speedup curves", speedup_figure(report))}
{_table(["arm", "quality", "speedup"], curve_rows(report))}
<h2 id="environment">Environment</h2>
{_table(["what", "value"], manifest_rows(report))}
<h2>Plugins</h2>
{plugins}
</body></html>
"""
