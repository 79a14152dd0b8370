"""Write docs/flags.md from the parser: every flag of every script, its default (with the
scripts whose default differs in brackets) and its help text.

    python tools/flags_doc.py            # rewrite docs/flags.md
    python tools/flags_doc.py --check    # exit 1 if docs/flags.md is out of date (tests)
"""

import argparse
import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnn_scripts import cli  # noqa: E402
from rnn_scripts.contract import read_contract  # noqa: E402

SCRIPTS = (
    "train_simplernn.py",
    "train_gru.py",
    "train_lstm.py",
    "train_bilstm.py",
    "train_imdb_bilstm.py",
)
OUTPUT = ROOT / "docs" / "flags.md"
HEADER = """# Every flag

All scripts share one parser (`rnn_scripts/cli.py`), so the names never drift; `--help`
prints them in these groups with each script's defaults. The flags of the group "model"
are made from each script's `build_model` keyword parameters (the template contract in
the README): a copied script with other parameters has other model flags. Where a
script's default differs, it is given in brackets. Written by `python tools/flags_doc.py`
from the parser; a test checks this table against every script's `--help`.

Invalid values (zero or negative sizes, an unknown data set, a learning rate that is
not a positive number up to 1e6, a split outside [0, 1), an abbreviated flag) are
refused in one line with exit code 2.

| flag | default | meaning |
| --- | --- | --- |
"""


def parsers():
    found = {}
    for script in SCRIPTS:
        module = importlib.import_module(script.removesuffix(".py"))
        reads = "text" if "imdb" in script else "sequences"
        defaults = cli.ScriptDefaults(epochs=3 if reads == "text" else 10)
        contract = read_contract(module.build_model, reads, cli.reserved_names())
        found[script] = cli.build_parser(script, None, contract, defaults)
    return found


def shown(action):
    if action.default in (None, False) or action.default == argparse.SUPPRESS:
        return ""
    return str(action.default)


def rows():
    tables = parsers()
    lines, seen = [], set()
    for parser in tables.values():
        for group in parser._action_groups:
            for action in group._group_actions:
                flag = action.option_strings[-1] if action.option_strings else None
                if not flag or flag == "--help" or (group.title, flag) in seen:
                    continue
                seen.add((group.title, flag))
                lines.append((group.title, flag, action))
    order = [
        g.title
        for g in tables[SCRIPTS[2]]._action_groups
        if g.title not in ("positional arguments", "options")
    ]
    table = []
    for title in order:
        table.append(f"| **{title}** | | |")
        for _, flag, action in (r for r in lines if r[0] == title):
            table.append(row(flag, action, tables))
    return table


def meaning_of(action):
    """The help text without the default it shows (the table has a column for it)."""
    text = " ".join((action.help or "").replace("%%", "%").split())
    return re.sub(r" \(default: [^)]*\)$", "", text)


def row(flag, action, tables):
    per_script, meanings = {}, []
    for script, parser in tables.items():
        match = [a for a in parser._actions if flag in a.option_strings]
        if match:
            per_script[script.removeprefix("train_").removesuffix(".py")] = shown(
                match[0]
            )
            meanings.append(meaning_of(match[0]))
    values = list(per_script.values())
    common = max(set(values), key=values.count)
    others = ", ".join(
        f"{name}: {value}" for name, value in per_script.items() if value != common
    )
    default = f"{common} ({others})" if others else common
    if action.choices:
        name = f"{flag} {{{','.join(map(str, action.choices))}}}"
    elif action.nargs == 0:
        name = flag if not flag.startswith("--no-") else flag
    else:
        name = f"{flag} {action.metavar or action.dest.upper()}"
    meaning = max(set(meanings), key=meanings.count)
    if len(per_script) < len(tables):
        meaning += f" ({', '.join(per_script)} only)"
    return f"| `{name}` | {default} | {meaning} |"


def document():
    return HEADER + "\n".join(rows()) + "\n"


def main():
    text = document()
    if "--check" in sys.argv[1:]:
        if OUTPUT.read_text() != text:
            sys.exit(f"{OUTPUT} is out of date: python tools/flags_doc.py")
        return
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
