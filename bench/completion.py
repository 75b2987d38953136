"""`metabench completion bash`: a bash completion script made from the CLI's own parser.

Generated rather than hand-written so it cannot fall behind the parser: subcommands and their options come from
argparse; names (suites, algorithms, benchmarks, profiles, figures) come at completion time from
`metabench list KIND --format names`, so overlays and plugins are included. No dependency (argcomplete would
import the whole CLI, and torch with it, on every TAB). zsh users: `autoload bashcompinit && bashcompinit` first.
"""
from __future__ import annotations

import argparse

from bench.cli import _parser
from bench.listing import LIST_KINDS

# option -> the list that completes its value
NAMED_VALUES = {"--algorithm": "algorithms", "--benchmark": "benchmarks", "--profile": "profiles"}
PATH_VALUES = ("--config", "--out", "--from", "--resume", "--data-root")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(opt for action in parser._actions for opt in action.option_strings)


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    """Fixed words of the first positional (e.g. `data check|where|prepare`)."""
    for action in parser._actions:
        if not action.option_strings and action.choices and not isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def bash_script() -> str:
    parser = _parser()
    subs = _subcommands(parser)
    cases = []
    for name, sub in subs.items():
        words = _choices(sub) or list(_subcommands(sub)) or (list(LIST_KINDS) if name == "list" else [])
        dynamic = {"run": "suites", "figures": "figures"}.get(name, "")
        cases.append(f'        {name}) opts="{" ".join(_options(sub))}"; words="{" ".join(words)}"; '
                     f'names="{dynamic}" ;;')
    named = "\n".join(f'        {opt}) COMPREPLY=($(compgen -W "$(metabench list {kind} --format names 2>/dev/null)" '
                      f'-- "$cur")); return ;;' for opt, kind in NAMED_VALUES.items())
    # the names of a subcommand's first argument; `figures` also takes `all`
    names_of_kind = "$(metabench list $names --format names 2>/dev/null; [[ $names == figures ]] && echo all)"
    return f"""# metabench bash completion: eval "$(metabench completion bash)"
_metabench() {{
    local cur prev cmd opts words names
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmd="${{COMP_WORDS[1]}}"
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "{" ".join(subs)} {" ".join(_options(parser))}" -- "$cur"))
        return
    fi
    case "$prev" in
{named}
        {"|".join(PATH_VALUES)}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    case "$cmd" in
{chr(10).join(cases)}
        *) opts=""; words=""; names="" ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n "$names" && $COMP_CWORD -eq 2 ]]; then
        COMPREPLY=($(compgen -W "{names_of_kind}" -- "$cur"))
    elif [[ -n "$words" && $COMP_CWORD -eq 2 ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -F _metabench metabench
"""


def add_arguments(comp) -> None:
    comp.add_argument("shell", choices=["bash"])


def command(args) -> int:
    print(bash_script(), end="")
    return 0
