"""Every command a message or docstring tells a user to run exists: `genrobust <subcommand> --<option>` (the
command line's own parser), `make <target>` (the Makefile) and "notebook NN" (notebooks/)."""
import ast
import re
from pathlib import Path

import pytest

from genrobust.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"genrobust ((?:[a-z][a-z_-]*)(?: (?:--?[a-z][a-z-]*|[A-Z][A-Z_]*|[a-z0-9_.]+))*)")
MAKE = re.compile(r"`make ([a-z][a-z-]*)")
NOTEBOOK = re.compile(r"\bnotebooks? (0[0-9])\b")


def _strings():
    for path in sorted((ROOT / "lib" / "genrobust").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield f"{path.relative_to(ROOT)}:{node.lineno}", node.value
            elif isinstance(node, ast.JoinedStr):  # f-strings: their literal parts
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                yield f"{path.relative_to(ROOT)}:{node.lineno}", text


def _subcommands():
    ap = build_parser()
    sub = next(a for a in ap._actions if a.dest == "cmd")
    return {name: {opt for a in p._actions for opt in a.option_strings} for name, p in sub.choices.items()}


def problems(strings) -> tuple[list[str], int]:
    """(one line per command, option, make target or notebook named in ``strings`` that does not exist, how many
    quoted genrobust commands were checked); strings: (where, text) pairs."""
    cmds = _subcommands()
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    notebooks = {p.name[:2] for p in (ROOT / "notebooks").glob("*.ipynb")}
    bad, seen = [], 0
    for where, text in strings:
        for m in re.finditer(r"`([^`]*)`", text):  # commands are quoted in backticks
            for c in COMMAND.finditer(m.group(1)):
                seen += 1
                words = c.group(1).split()
                if words[0] not in cmds:
                    bad.append(f"{where}: `genrobust {words[0]}` is not a command ({sorted(cmds)})")
                    continue
                bad += [f"{where}: `genrobust {words[0]}` has no option {w}" for w in words[1:]
                        if w.startswith("-") and w not in cmds[words[0]]]
        bad += [f"{where}: no make target {t!r}" for t in MAKE.findall(text) if t not in targets]
        bad += [f"{where}: no notebook {n}" for n in NOTEBOOK.findall(text) if n not in notebooks]
    return bad, seen


def test_every_named_command_option_target_and_notebook_exists():
    bad, seen = problems(_strings())
    assert seen >= 3, "the pattern found no quoted command at all: the check would be empty"
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("text, problem", [("`genrobust run`", "not a command"),
                                          ("`genrobust train --gpu 1`", "no option --gpu"),
                                          ("run `make tests`", "no make target 'tests'"),
                                          ("see notebook 09", "no notebook 09")])
def test_the_check_catches_a_wrong_name(text, problem):
    bad, _ = problems([("x.py:1", text)])
    assert len(bad) == 1 and problem in bad[0]
