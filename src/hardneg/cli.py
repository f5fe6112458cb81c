"""Command line: build each verb's config, call its one library function (``hardneg.verbs``), print. Options are
generated from the verbs' config dataclasses (``hardneg.options``): a field is a flag, a ``--config`` key and a
``table.key=value`` override alike. No logic that Python users cannot reach."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource
from rich.logging import RichHandler
from rich.text import Text

from hardneg import verbs
from hardneg.cli_help import CONFIG_FILES, RESOLVED, short_help, verb_help
from hardneg.cli_show import SHOW, console, out_console
from hardneg.errors import HardnegError
from hardneg.options import MISSING, Field, coerce, is_override

app = click.Group("hardneg", no_args_is_help=True,
                  help="hardneg: positive-aware hard-negative mining and embedding fine-tuning (NV-Retriever).")


def _setup(quiet: bool) -> None:
    """Logging and progress for one command; ``-q`` leaves nothing on either stream but an error line."""
    logging.basicConfig(level=logging.ERROR if quiet else logging.INFO, format="%(message)s", force=True,
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])
    for noisy in ("sentence_transformers", "transformers", "datasets", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR if quiet else logging.WARNING)
    console.quiet = out_console.quiet = quiet
    if quiet:
        warnings.simplefilter("ignore")
        # Read by tqdm when a bar is created (hardneg, sentence-transformers, transformers' Trainer).
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        for mod, fn in (("transformers.utils.logging", "disable_progress_bar"),
                        ("datasets.utils.logging", "disable_progress_bar"),
                        ("huggingface_hub.utils", "disable_progress_bars")):
            if mod.split(".")[0] in sys.modules:  # only libraries already imported: no import cost for -q
                getattr(__import__(mod, fromlist=[fn]), fn)()


def _option(f: Field, bare: bool, inherit: str = "") -> click.Option:
    """A field's flag: ``--key`` in the verb's own table, ``--table.key`` in the others; bools get ``--no-key``."""
    key = f.name.replace("_", "-") if bare else f"{f.table}.{f.name.replace('_', '-')}"
    shown = None if f.default in (MISSING, None, (), "", {}) else f.default
    shown = f"{inherit}.{f.name}" if inherit else shown  # a stage key: [train]'s value when unset
    shown = ("on" if shown else "off") if isinstance(shown, bool) else shown
    shown = ", ".join(map(str, shown)) if isinstance(shown, tuple) else shown
    text = f.help + (f" [default: {shown}]" if shown is not None and "[default" not in f.help else "")
    decls = [f"--{key}/--no-{key}" if f.kind == "bool" else f"--{key}", *f.flags, _dest(f)]
    kind = None if f.kind == "bool" else {"int": click.INT, "float": click.FLOAT}.get(f.kind, click.STRING)
    return click.Option(decls, type=kind, multiple=f.multi, default=None, help=text)


def _dest(f: Field) -> str:
    return f"{f.table}__{f.name}".replace("-", "_")


def parse(verb: str, ctx: click.Context, kw: dict[str, Any]) -> tuple[str | None, list[str], dict]:
    """A verb's (config file, overrides, flags set on the command line); positional fields count as flags."""
    fields = [f for t in verbs.TABLES[verb] for f in t.fields()]
    flags = {(f.table, f.name): coerce(f, kw[_dest(f)]) for f in fields
             if ctx.get_parameter_source(_dest(f)) == ParameterSource.COMMANDLINE}
    args, config = list(kw["args"]), kw["config"]
    rest = [a for a in args if not is_override(a)]
    if verb in CONFIG_ARG and rest and config is None:
        config = rest.pop(0)
    for f in (f for f in fields if f.positional and rest):
        value, rest = (tuple(rest), []) if f.multi else (rest[0], rest[1:])
        flags.setdefault((f.table, f.name), value)
    if rest:
        raise HardnegError(f"unexpected argument {rest[0]!r}", where=f"hardneg {verb}",
                           fix=f"overrides are written table.key=value; see `hardneg {verb} --help`")
    overrides = [a for a in args if is_override(a)]
    if verb in CONFIG_ARG and config is None and not (flags or overrides):  # nothing asked: not a default run
        raise HardnegError("Missing argument 'CONFIG'", where=f"hardneg {verb}", fix=f"see `hardneg {verb} --help`")
    return config, overrides, flags


CONFIG_ARG = ("run", "ablate", "recipe")  # take the config file as their first argument too
EXTRA: dict[str, list[click.Parameter]] = {"ablate": [  # which points to run now (not part of the config)
    click.Option(["--limit"], type=click.IntRange(min=0), help="Run at most this many unfinished points, then stop "
                 "(0: run nothing; the log says how many are left)."),
    click.Option(["--strategy"], multiple=True, help="Run only this grid strategy (repeatable); the other points "
                 "stay for a later run."),
    click.Option(["--seed"], type=click.INT, multiple=True, help="Run only this grid seed (repeatable).")]}


def command(verb: str, show: Callable[..., Any]) -> click.Command:
    """The click command of a verb: its generated options, --config, -q, overrides; ``show(cfg, quiet, **extra)``
    runs the library function and prints."""
    tables = verbs.TABLES[verb]
    fields = [f for t in tables for f in t.fields()]
    positional = [f for f in fields if f.positional]
    example = "configs/nv-retriever-v1.toml" if verb == "recipe" else "configs/scifact.toml"
    arguments = ([("CONFIG", f"TOML config (as --config), e.g. {example}.")] if verb in CONFIG_ARG else [])
    arguments += [(f.name.upper(), f.help) for f in positional] + [("TABLE.KEY=VALUE", "Override, e.g. train.epochs=2.")]
    names = {t.name: {f.name for f in t.fields()} for t in tables}
    params = [_option(f, t.bare, t.inherit if f.name in names.get(t.inherit, ()) else "")
              for t in tables for f in t.fields()] + EXTRA.get(verb, []) + [
        click.Option(["--config"], help=f"Config file: {CONFIG_FILES.get(verb, RESOLVED)}."),
        click.Option(["--quiet", "-q"], is_flag=True, help="Print nothing but errors."),
        click.Argument(["args"], nargs=-1, metavar=" ".join([a for a, _ in arguments[:-1]] + ["[TABLE.KEY=VALUE]..."]))]

    def callback(**kw: Any) -> None:
        _setup(kw["quiet"])
        config, overrides, flags = parse(verb, click.get_current_context(), kw)
        extra = {p.name: kw[p.name] for p in EXTRA.get(verb, [])}
        code = show(verbs.resolve(verb, config, overrides, flags), kw["quiet"], **extra)
        if code:
            raise click.exceptions.Exit(code)

    return click.Command(verb, params=params, callback=callback, short_help=short_help(verb),
                         help=verb_help(verb, [t.name for t in tables], arguments))


for _name, _show in SHOW.items():
    app.add_command(command(_name, _show))


def _error(text: str) -> None:
    console.quiet = False  # errors show even with -q
    # Text, not markup: messages quote user input such as "[train] unknown key", which rich would eat.
    console.print(Text.assemble(("error: ", "bold red"), text), highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: user errors (ours and the argument parser's) become one line on stderr and exit code 2;
    Ctrl-C prints one line and exits 130."""
    try:
        code = app.main(standalone_mode=False, prog_name="hardneg")
    except HardnegError as exc:
        _error(exc.one_line())
        sys.exit(2)
    except click.ClickException as exc:  # the argument parser's usage errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            out_console.print(ctx.get_help(), markup=False, highlight=False)
            sys.exit(2)
        where = ctx.command_path if ctx is not None else "hardneg"
        what = " ".join(exc.format_message().split()).rstrip(".")
        _error(f"{where}: {what}. Fix: see `{where} --help`")
        sys.exit(2)
    except (click.Abort, KeyboardInterrupt):
        code = 130
    if code == 130:
        verb_name = next((a for a in sys.argv[1:] if not a.startswith("-")), "the command")
        console.quiet = False
        console.print(f"interrupted: hardneg {verb_name} stopped; finished files and cached embeddings are kept, "
                      "and rerunning the same command resumes", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
