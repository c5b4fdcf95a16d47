"""A method card as terminal text (`algospeed methods show NAME`) and the catalogue of cards as Markdown
(`algospeed methods --markdown docs/methods.md`)."""

from __future__ import annotations

from collections.abc import Sequence
from inspect import Parameter

from algospeed.cards.card import MethodCard
from algospeed.taxonomy.axes import Place
from algospeed.taxonomy.schema import Entry

MARKDOWN_COMMAND = "algospeed methods --markdown docs/methods.md"
ADAPTERS = {
    "Lightning": ("algospeed.integrations.lightning", "lightning.Trainer(max_epochs=10, callbacks=[{callback}])"),
    "Hugging Face": (
        "algospeed.integrations.transformers",
        "transformers.Trainer(model, args, train_dataset=data, callbacks=[{callback}])",
    ),
}


def suggested_spec(card: MethodCard) -> str:
    """The spec a user should start from: the first shipped recipe's settings for it, else its defaults."""
    return card.evidence[0].spec if card.evidence else card.name


def usage(card: MethodCard) -> list[tuple[str, list[str]]]:
    """(where, lines of code) for each way to use the method."""
    spec = suggested_spec(card)
    plugin = "" if card.origin == "built-in" else f"--plugin {card.origin} "
    ways = [
        ("CLI", [f"algospeed train {plugin}--workload {card.workload or 'WORKLOAD'} --methods {spec}"]),
        (
            "Python trainer",
            [
                "from algospeed import methods",
                "from algospeed.core.trainer import Trainer",
                f'trainer = Trainer(model, train, optimizer=..., budget="4ep", callbacks=methods.build_all("{spec}"))',
            ],
        ),
    ]
    if card.functions:
        names = ", ".join(function.name for function in card.functions)
        ways.append(
            ("plain function", [f"from algospeed.functional import {names}", *(f.signature for f in card.functions)])
        )
    for support in card.loops or ():
        module, call = ADAPTERS[support.loop]
        if support.works:
            callback = f'AlgospeedCallback("{spec}")'
            ways.append((support.loop, [f"from {module} import AlgospeedCallback", call.format(callback=callback)]))
    return ways


def loop_limits(card: MethodCard) -> list[str]:
    """Why the method does not work in the loops it does not work in (one line when the reason is shared)."""
    if card.loops is None:
        return ["Lightning and Hugging Face: not in docs/integrations.md's support table yet"]
    refused = [support for support in card.loops if not support.works]
    if len(refused) == 2 and refused[0].why == refused[1].why:
        return [f"not in the {refused[0].loop} or {refused[1].loop} loop: {refused[0].why}"]
    return [f"not in the {support.loop} loop: {support.why}" for support in refused]


def evidence_lines(card: MethodCard) -> list[str]:
    """The measured evidence behind the suggested settings, or that there is none yet."""
    if not card.evidence:
        return [
            f"no measured evidence yet: no shipped recipe uses {card.name} "
            "(`algospeed recipe search --workload W` looks for one on your workload)"
        ]
    lines = []
    for item in card.evidence:
        stack = f", stacked with {', '.join(item.stacked_with)}" if item.stacked_with else ""
        study = f"; study {item.study}" if item.study else ""
        lines.append(f"{item.spec} in recipe {item.recipe} on {item.workload}{stack}: {item.measured}{study}")
    return lines


def place_line(place: Place) -> str:
    """`where=optimization what=reuse how=fewer_steps when=throughout`."""
    return (
        f"where={'/'.join(v.value for v in place.where)} what={'/'.join(v.value for v in place.what)} "
        f"how={place.how.value} when={'/'.join(v.value for v in place.when)}"
    )


def paper_line(entry: Entry | None) -> str:
    """The catalogue entry's source and the speedup the paper reports."""
    if entry is None:
        return "not in the catalogue"
    ref = entry.reference
    named = [author for author in ref.authors if author != "et al."]
    authors = ", ".join(named[:3]) + (" et al." if len(ref.authors) > 3 or "et al." in ref.authors else "")
    link = f"arXiv:{ref.arxiv}" if ref.arxiv else ref.url
    where = "; ".join(part for part in (ref.venue, link) if part)
    reported = entry.reported_speedup or "no speedup figure"
    return f'{authors} ({ref.year}), "{ref.title}", {where} (catalogue: {entry.id}); paper reports: {reported}'


def catalogue_notes(entry: Entry | None) -> list[str]:
    """What the catalogue says a reader should know: a systems-level feature, its notes on the source."""
    if entry is None:
        return []
    systems = ["a systems-level feature (the same computation, laid out or scheduled differently)"]
    return (systems if entry.systems else []) + ([entry.notes] if entry.notes else [])


def card_text(card: MethodCard) -> str:
    """The card for the terminal, as plain text."""
    origin = "" if card.origin == "built-in" else f" (from {card.origin})"
    lines = [f"{card.name}{origin}", card.summary, ""]
    lines += [card.description, ""] if card.description else []
    lines.append(f"place: {place_line(card.place)}; data: {card.data}")
    if card.conflicts or card.requires:
        lines.append(f"conflicts: {', '.join(card.conflicts) or '-'}; needs: {', '.join(card.requires) or '-'}")
    lines += [f"note: {note}" for note in card.notes]
    lines.append(f"paper: {paper_line(card.entry)}")
    lines += [f"catalogue: {note}" for note in catalogue_notes(card.entry)]
    if card.settings:
        lines.append(f"settings ({card.name}:KEY=VALUE:KEY=VALUE):")
        lines += [f"  {line}" for line in _setting_lines(card)]
    lines.append("how to use:")
    for where, code in usage(card):
        lines.append(f"  {where}:")
        lines += [f"    {line}" for line in code]
    lines += [f"  {line}" for line in loop_limits(card)]
    lines.append("suggested settings (measured):")
    lines += [f"  {line}" for line in evidence_lines(card)]
    return "\n".join(lines)


def cards_markdown(cards: Sequence[MethodCard]) -> str:
    """The catalogue of cards for documentation: an index table, then one section per method."""
    out = [
        "# Speedup methods",
        "",
        f"One card per implemented method, generated from the code by `{MARKDOWN_COMMAND}`",
        "(do not edit it by hand: rerun that). `algospeed methods show NAME` prints the same card in a terminal.",
        "",
        "| method | where | what | how | when | data | summary |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for card in cards:
        place = card.place
        cells = [
            f"[`{card.name}`](#{card.name})",
            ", ".join(v.value for v in place.where),
            ", ".join(v.value for v in place.what),
            place.how.value,
            ", ".join(v.value for v in place.when),
            card.data,
            _cell(card.summary),
        ]
        out.append(f"| {' | '.join(cells)} |")
    for card in cards:
        out += ["", *_card_markdown(card)]
    return "\n".join(out) + "\n"


def _card_markdown(card: MethodCard) -> list[str]:
    origin = "" if card.origin == "built-in" else f" (from {card.origin})"
    out = [f'<a id="{card.name}"></a>', "", f"## {card.name}{origin}", "", card.summary, ""]
    out += [card.description, ""] if card.description else []
    out.append(f"- **place**: {place_line(card.place)}; **data**: {card.data}")
    if card.conflicts or card.requires:
        out.append(f"- **conflicts**: {', '.join(card.conflicts) or '-'}; **needs**: {', '.join(card.requires) or '-'}")
    out += [f"- **note**: {note}" for note in card.notes]
    out.append(f"- **paper**: {paper_line(card.entry)}")
    out += [f"- **catalogue**: {note}" for note in catalogue_notes(card.entry)]
    if card.settings:
        out += ["", f"Settings (`{card.name}:KEY=VALUE:KEY=VALUE`):", ""]
        out += [f"- `{line}`" for line in _setting_lines(card)]
    out += ["", "How to use:", ""]
    for where, code in usage(card):
        out += [f"- {where}:", "", "  ```" + ("bash" if where == "CLI" else "python"), *(f"  {line}" for line in code)]
        out += ["  ```", ""]
    out += [f"- {line}" for line in loop_limits(card)]
    out += ["", "Suggested settings, with the measured evidence behind them:", ""]
    out += [f"- {line}" for line in evidence_lines(card)]
    return out


def _setting_lines(card: MethodCard) -> list[str]:
    tuned = set(card.tuned)
    return [
        f"{s.name} = {_value(s.default)}  ({s.type}){'  tuned by the recipe search' if s.name in tuned else ''}"
        for s in card.settings
    ]


def _value(value: object) -> str:
    if value is Parameter.empty:
        return "(required)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
