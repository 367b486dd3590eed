"""MkDocs hook: the config-key reference, generated from the key table (trainables.keys) and the
trainables registry wherever a page says `<!-- config-keys -->`, so the page lists every key
the code knows (tests/test_docs.py checks the built page)."""

from __future__ import annotations

import json

MARKER = "<!-- config-keys -->"
ROLES = {"factor": "a factor", "seed": "the seed", "mechanics": "mechanics"}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _default(value) -> str:
    return "`" + json.dumps(list(value) if isinstance(value, tuple) else value) + "`"


def key_table() -> str:
    from trainables.keys import KEYS
    from trainables.registry import TRAINABLES

    rows = ["| key | default | what it sets | to a study | fused members may differ |", "|---|---|---|---|---|"]
    for name, key in KEYS.items():
        what = key.doc
        names = getattr(key.check, "names", None)
        if names:
            what += ": " + ", ".join(f"`{n}`" for n in names())
        if key.common:
            default = _default(key.default)
        else:
            owners = {t: spec.extra[name] for t, spec in TRAINABLES.items() if name in spec.extra}
            default = "; ".join(f"{_default(v)} ({t})" for t, v in owners.items())
        rows.append(f"| `{name}` | {_cell(default)} | {_cell(what)} | {ROLES[key.role]} | "
                    f"{'yes' if key.fusible else ''} |")
    rows.append("| `members` | none | the runs trained together as one trial: a list of tables of the "
                "keys fused members may differ in, one per member (e.g. `[{\"seed\": 0}, {\"seed\": 1}]`) "
                "| mechanics | |")
    rows.append("| `trainable` | none | which model and dataset (above) | a factor (a dataset is a stratum) | |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace(MARKER, key_table()) if MARKER in markdown else markdown
