"""Refuse a ``python -m monai.bundle run`` whose command line sets a config id that no config file defines.

MONAI takes every ``--<id> <value>`` pair it does not know as a config override and adds it to the config, so a
misspelt or guessed id (``--fold 1`` where the bundles call it ``val_fold``, ``--max_epoch 5``) is accepted and
changes nothing: the run goes ahead with the defaults and nothing says so. Every bundle config calls
:func:`refuse_unknown_overrides` first in its ``initialize`` list::

    "initialize": ["$nnmamba_monai.bundle_overrides.refuse_unknown_overrides()", ...]

It reads the command line of the running process; when that is not ``monai.bundle run`` (a test, MONAI Label,
``python -m nnmamba_monai.predict``, a notebook building the workflow itself), it does nothing. A top-level id
given on the command line must be set by one of the config files passed with ``--config_file`` (or
``--args_file``), be one of MONAI's own run arguments, or be referenced (``@id``) by another override. Nested ids
(``--network_override#channels 8``, ``--train#trainer#max_epochs 2``) are left to MONAI: their parent must exist
there, and a component refuses an argument it does not take.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nnmamba_monai.refusal import RefusalError, install_excepthook

__all__ = [
    "UnknownOverrideError",
    "check_override_ids",
    "command_line_overrides",
    "monai_run_arguments",
    "monai_run_spelling",
    "refuse_unknown_overrides",
    "unknown_override_ids",
]


class UnknownOverrideError(RefusalError):
    """A command-line override names a top-level config id that none of the run's config files defines."""


def monai_run_arguments() -> frozenset[str]:
    """The names ``python -m monai.bundle run`` takes as its own arguments rather than as config overrides.

    Read from the signatures of ``monai.bundle.run``, ``create_workflow`` and ``ConfigWorkflow`` of the installed
    MONAI, so a MONAI release that adds one is followed without a change here.
    """
    from monai.bundle import ConfigWorkflow
    from monai.bundle.scripts import create_workflow, run

    names = {"workflow_name"}
    for function in (run, create_workflow, ConfigWorkflow.__init__):
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) and parameter.name != "self":
                names.add(parameter.name)
    return frozenset(names)


def _is_monai_bundle_run(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is that of ``python -m monai.bundle run ...`` (or under ``torchrun -m monai.bundle``)."""
    if len(argv) < 2 or argv[1] != "run":
        return False
    program = Path(argv[0])
    return program.name == "__main__.py" and program.parent.name == "bundle" and program.parent.parent.name == "monai"


def _parse_value(text: str) -> Any:
    """A command-line value as python-fire (MONAI's command-line parser) reads it: a Python literal, else the text."""
    try:
        from fire.parser import DefaultParseValue
    except ImportError:  # fire is what runs ``monai.bundle``; without it there is no such command line
        return text
    return DefaultParseValue(text)


def command_line_overrides(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The ``--<name> <value>`` pairs of a ``monai.bundle run`` command line, MONAI's own arguments included.

    Args:
        argv: the process's arguments (``sys.argv`` by default), program first.

    Returns:
        ``{name: value}`` in command-line order, values parsed as python-fire parses them (``--name=value`` and a
        bare ``--flag``, which is ``True``, are understood); ``None`` when ``argv`` is not a ``monai.bundle run``.
    """
    argv = list(sys.argv if argv is None else argv)
    if not _is_monai_bundle_run(argv):
        return None
    pairs: dict[str, Any] = {}
    tokens = argv[2:]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "--":  # what follows is python-fire's own flags (``-- --help``)
            break
        if not token.startswith("--"):
            continue
        name, has_value, value = token[2:].partition("=")
        if not has_value:
            if index < len(tokens) and not tokens[index].startswith("--"):
                value = tokens[index]
                index += 1
            else:
                pairs[name] = True
                continue
        pairs[name] = _parse_value(value)
    return pairs


def _defined_ids(config_files: Any) -> dict[str, Any]:
    """The merged top level of the config files ``--config_file`` names (a path, a list, or comma-joined paths)."""
    from monai.bundle import ConfigParser

    return dict(ConfigParser.load_config_files(config_files))


def _referenced(name: str, values: Iterable[Any]) -> bool:
    """Whether any override value refers to the id ``name`` (``@name``, ``@name#...``, ``@name::...``)."""
    for value in values:
        text = str(value)
        start = text.find(f"@{name}")
        while start >= 0:
            end = start + 1 + len(name)
            if end == len(text) or not (text[end].isalnum() or text[end] == "_"):
                return True
            start = text.find(f"@{name}", end)
    return False


def unknown_override_ids(defined: Mapping[str, Any], overrides: Mapping[str, Any], tracking: bool = False) -> list[str]:
    """The override names that would add a new top-level id which nothing reads.

    Args:
        defined: the merged top level of the run's config files.
        overrides: ``{name: value}`` given on the command line (MONAI's own run arguments are skipped).
        tracking: whether ``--tracking`` is on, which makes MONAI's tracking settings valid ids.

    Returns:
        The names, in the order given. Nested ids (``a#b``, ``a::b``), ``_meta_`` ids and ids another override
        refers to are never in it.
    """
    allowed = set(monai_run_arguments())
    if tracking:
        from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

        allowed.update(DEFAULT_MLFLOW_SETTINGS["configs"])  # the ids ``--tracking`` adds to a config
    unknown = []
    for name in overrides:
        nested = "#" in name or "::" in name  # MONAI's id separators, old and new
        if name in allowed or nested or name.startswith("_meta_") or name in defined:
            continue
        if name.startswith("no") and name[2:] in defined:  # python-fire's ``--noflag`` for ``flag=False``
            continue
        others = [value for other, value in overrides.items() if other != name]
        if _referenced(name, others):
            continue
        unknown.append(name)
    return unknown


def monai_run_spelling(name: str, value: Any = None) -> str:
    """How ``monai.bundle run`` is given the id ``name`` (with ``value``, or as a suggestion when it is None)."""
    return f"--{name}" if value is None or value is True else f"--{name} {value}"


def check_override_ids(
    defined: Mapping[str, Any],
    overrides: Mapping[str, Any],
    tracking: bool = False,
    spelling: Callable[..., str] = monai_run_spelling,
) -> None:
    """Raise :class:`UnknownOverrideError` naming every override in :func:`unknown_override_ids`.

    Args:
        defined: the merged top level of the run's config files.
        overrides: ``{name: value}`` as the user gave them.
        tracking: whether ``--tracking`` is on.
        spelling: ``spelling(name, value)`` writes an override the way the user's command gives it,
            ``spelling(name)`` a suggested id (default: ``monai.bundle run``'s ``--name value``).
    """
    unknown = unknown_override_ids(defined, overrides, tracking=tracking)
    if not unknown:
        return
    install_excepthook()
    candidates = [key for key in defined if not key.startswith("_")]
    lines = []
    for name in unknown:
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        suggested = " or ".join(spelling(key) for key in close)
        hint = f"did you mean {suggested}?" if close else "no config id is close to it"
        lines.append(
            f"'{spelling(name, overrides[name])}' sets the config id '{name}', which no config file of this run "
            f"defines, so it would change nothing; {hint}"
        )
    if len(lines) > 1:
        names = ", ".join(f"'{name}'" for name in unknown)
        lines.insert(0, f"{len(unknown)} command-line overrides set config ids no config file defines: {names}")
    lines.append("To add a new id on purpose, put it in a config file and pass that with --config_file.")
    raise UnknownOverrideError("\n".join(lines))


def refuse_unknown_overrides(argv: Sequence[str] | None = None) -> None:
    """Raise :class:`UnknownOverrideError` if the ``monai.bundle run`` command line sets an id nothing defines.

    Called from the ``initialize`` list of every bundle config, before any data is read. A no-op outside a
    ``python -m monai.bundle run`` process.

    Args:
        argv: the process's arguments (``sys.argv`` by default), program first.

    Raises:
        UnknownOverrideError: naming each unknown id with its value and the closest defined ids; to add a new id
            on purpose, put it in a config file passed with ``--config_file``.
    """
    overrides = command_line_overrides(argv)
    if overrides is None:
        return
    args_file = overrides.get("args_file")
    if args_file is not None:  # MONAI reads run arguments and overrides from it, the command line winning
        from monai.bundle import ConfigParser

        overrides = {**ConfigParser.load_config_file(str(args_file)), **overrides}
    config_file = overrides.get("config_file")
    if config_file is None:
        return  # MONAI refuses a run without config files itself
    defined = _defined_ids(config_file)
    check_override_ids(defined, overrides, tracking=overrides.get("tracking") is not None)
