"""One config interface for every verb: each option is a dataclass field declared once, with its help text, and
reaches the command-line flag, the TOML / JSON key and the ``section.key=value`` override alike.

A verb's config is a set of tables (``[mine]``, ``[train]``, ``[data]``, ...), each backed by one or more frozen
dataclasses. A field of a table is set, lowest precedence first, by its default, by ``--config FILE`` (TOML, or
the ``config.resolved.json`` an earlier run wrote), by a trailing ``table.key=value`` override, and by its flag:
``--key`` for the verb's own tables, ``--table.key`` for the others (``_`` written as ``-``).

Fields are read from the dataclasses' source with ``ast`` (never imported here), so ``hardneg VERB --help``
lists every option without loading torch. Help comes from ``opt(default, "help")`` (``field`` metadata) or, for
dataclasses whose modules declare none, from ``hardneg.options_help.HELP``. This module imports nothing of hardneg
but errors and that table.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.errors import ConfigErrors, HardnegError
from hardneg.options_help import HELP

MISSING = dataclasses.MISSING
ROOT = Path(__file__).resolve().parent


def opt(default: Any = MISSING, help: str = "", *, flags: tuple[str, ...] = (), positional: bool = False) -> Any:
    """A dataclass field with its help text (and extra flag spellings such as ``-s``, or a positional slot)."""
    meta = {"help": help, "flags": flags, "positional": positional}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default")
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Field:
    """One option: its table, key, value kind and help (kinds: bool, int, float, str, boolstr, literal)."""

    table: str
    name: str
    kind: str
    multi: bool
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    positional: bool = False

    @property
    def required(self) -> bool:
        return self.default is MISSING


@dataclass(frozen=True)
class Table:
    """A config table: its name, the dataclasses (``module:Class``) whose fields it holds (a name two share is the
    first's), whether its flags are bare (``--key``: the verb's own table) or prefixed (``--table.key``), names it
    leaves out and the table its unset keys fall back to (``inherit``: their default in --help)."""

    name: str
    classes: tuple[str, ...]
    bare: bool = True
    exclude: tuple[str, ...] = ()
    inherit: str = ""

    def fields(self) -> list[Field]:
        out: dict[str, Field] = {}
        for f in (f for ref in self.classes for f in class_fields(ref, self.name)):
            if f.name not in self.exclude:
                out.setdefault(f.name, f)
        return list(out.values())


def _kind(annotation: str) -> tuple[str, bool]:
    parts = [p.strip() for p in _split_union(annotation)]
    parts = [p for p in parts if p != "None"]
    if len(parts) == 1 and parts[0].split("[")[0] in ("tuple", "list"):
        inner = parts[0].split("[", 1)[1].rsplit("]", 1)[0].split(",")[0].strip()
        return _kind(inner)[0], True
    names = set(parts)
    if len(names) == 1 and parts[0].startswith("dict"):
        return "literal", False  # a table: a TOML inline table on the command line
    if names == {"bool"}:
        return "bool", False
    if names in ({"int"}, {"float"}):
        return names.pop(), False
    if names == {"bool", "str"}:
        return "boolstr", False
    if len(names) > 1:
        return "literal", False
    return "str", False


def _split_union(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


@functools.lru_cache(maxsize=None)
def _module(module: str) -> tuple[dict[str, ast.ClassDef], dict[str, Any]]:
    """A module's classes and module-level literal constants (shared help texts; imported ones read lazily)."""
    path = ROOT.joinpath(*module.split(".")[1:]).with_suffix(".py")
    classes, consts = {}, {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = node
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hardneg."):
            consts.update({a.asname or a.name: _Imported((node.module, a.name)) for a in node.names})
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            try:
                if isinstance(target, ast.Name):
                    consts[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return classes, consts


class _Imported(tuple):
    """(module, name) of a name imported from another hardneg module."""


def _literal(node: ast.expr, consts: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in consts:
        value = consts[node.id]
        return _module(value[0])[1][value[1]] if isinstance(value, _Imported) else value
    return ast.literal_eval(node)


def class_fields(ref: str, table: str) -> list[Field]:
    """The dataclass fields of ``module:Class``, read from its source (the module is not imported)."""
    out = []
    module, cls = ref.split(":")
    classes, consts = _module(module)
    for node in classes[cls].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        ann = ast.unparse(node.annotation)
        if ann.startswith("ClassVar"):
            continue
        default, meta = _default(node.value, consts)
        kind, multi = _kind(ann)
        help_ = meta.get("help") or HELP.get(ref.split(":")[1], {}).get(node.target.id, "")
        out.append(Field(table, node.target.id, kind, multi, default, help_, tuple(meta.get("flags", ())),
                         bool(meta.get("positional"))))
    return out


def _default(value: ast.expr | None, consts: dict[str, Any]) -> tuple[Any, dict]:
    if value is None:
        return MISSING, {}
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("opt", "field", "dataclasses.field"):
        kw = {k.arg: k.value for k in value.keywords}
        meta = ast.literal_eval(kw["metadata"]) if "metadata" in kw else {}
        if ast.unparse(value.func) == "opt":  # opt(default, help, flags=..., positional=...)
            meta = {k: _literal(v, consts) for k, v in kw.items() if k != "default"}
            if len(value.args) > 1:
                meta["help"] = _literal(value.args[1], consts)
            node = value.args[0] if value.args else kw.get("default")
            if isinstance(node, ast.Name) and node.id == "MISSING":
                node = None
        else:
            node = kw.get("default")
            empty = {"dict": {}, "tuple": (), "list": ()}.get(ast.unparse(kw.get("default_factory", value.func)))
            if node is None and empty is not None:  # field(default_factory=dict)
                return empty, meta
        return (MISSING if node is None else _literal(node, consts)), meta
    try:
        return _literal(value, consts), {}
    except ValueError:
        return MISSING, {}


def parse_value(raw: str) -> Any:
    """A value written on the command line: TOML (``2``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``) or a bare string."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except (ValueError, RecursionError):  # TOMLDecodeError, an over-long integer, nesting too deep
        return raw.strip()  # a bare string; validation reports it if it must be a number


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value``; the value is read by ``parse_value``."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise HardnegError(f"bad override {text!r}", fix="write section.key=value, e.g. train.epochs=2")
    key, raw = text.split("=", 1)
    section, k = key.strip().split(".", 1)
    return section, k.strip(), parse_value(raw)


def is_override(text: str) -> bool:
    """Whether a positional argument is meant as a ``section.key=value`` override (not a file name): it holds
    ``=`` and no ``/`` before it (``parse_override`` then reports a malformed one)."""
    if "=" not in text or "/" in text.split("=", 1)[0]:
        return False
    try:
        return not Path(text).exists()
    except (OSError, ValueError):  # a name too long (or holding NUL) for a file is not one
        return True


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file with a one-line error on a missing file, bad encoding or bad syntax."""
    p = Path(path)
    if not p.is_file():
        raise HardnegError("config file not found", where=p, fix="pass a TOML file, e.g. configs/scifact.toml")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8-sig"))  # -sig: a leading byte-order mark is skipped
    except UnicodeDecodeError:
        raise HardnegError("config is not UTF-8 text", where=p, fix="save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise HardnegError(f"invalid TOML ({exc})", where=p, fix="fix the TOML syntax") from None
    except RecursionError:
        raise HardnegError("invalid TOML (arrays or tables nested too deeply)", where=p,
                           fix="flatten the nesting") from None
    except ValueError as exc:  # tomllib lets int()'s digit limit through
        raise HardnegError(f"invalid TOML ({str(exc).split(';')[0]})", where=p,
                           fix="write numbers with fewer digits") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """A ``--config`` file: TOML, or JSON (the ``config.resolved.json`` an earlier run wrote beside its output)."""
    if str(path).endswith(".json"):
        from hardneg.io import read_json

        if not Path(path).is_file():
            raise HardnegError("config file not found", where=path, fix="pass a TOML or JSON config file")
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise HardnegError("a config must be an object of tables", where=path, fix="write {\"table\": {...}}")
        return raw
    return read_toml(path)


def coerce(f: Field, value: Any) -> Any:
    """Values in the field's shape: one string (or table) for a list field is a list of one; "true" / "false" of a
    bool-or-string field are booleans; text for a field of tables or mixed types is TOML (``{beir = "x"}``)."""
    if f.multi:
        if isinstance(value, (str, int, float, dict)) and not isinstance(value, bool):
            value = (value,)
        value = tuple(value) if isinstance(value, (list, tuple)) else value
        if f.kind == "literal" and isinstance(value, tuple):
            return tuple(parse_value(v) if isinstance(v, str) else v for v in value)
        return value
    if f.kind == "boolstr" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if f.kind == "literal" and isinstance(value, str):
        return parse_value(value)
    return value


def merge(tables: list[Table], raw: dict[str, Any] | None = None, overrides: list[str] = (),
          flags: dict[tuple[str, str], Any] | None = None, *, where: str = "config",
          strict: bool = True, problems: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The set values of every table, lowest precedence first: the file ``raw``, then ``overrides``, then
    ``flags`` ((table, key) -> value); unknown tables and keys are reported at once (raised, or appended to
    ``problems`` when given). Defaults are not filled in (the dataclasses do that); a ``null`` table (JSON) is
    empty. ``strict=False`` keeps unknown tables for a caller that checks them itself."""
    by_table = {t.name: {f.name: f for f in t.fields()} for t in tables}
    collect = problems is not None
    problems = problems if collect else []
    out: dict[str, dict[str, Any]] = {t: {} for t in by_table}

    def put(table: str, key: str, value: Any, source: str) -> None:
        if table not in by_table:
            if strict:
                problems.append(f"{source}unknown section [{table}] (valid: {', '.join(by_table)})")
            else:
                out.setdefault(table, {})[key] = value
        elif key not in by_table[table]:
            problems.append(f"{source}[{table}] unknown key {key!r} (valid: {', '.join(sorted(by_table[table]))})")
        else:
            out[table][key] = coerce(by_table[table][key], value)

    for table, values in (raw or {}).items():
        if values is None:
            continue
        if table not in by_table and strict:  # once, however many keys (or none) it holds
            problems.append(f"unknown section [{table}] (valid: {', '.join(by_table)})")
            continue
        if not isinstance(values, dict):
            if table in by_table or strict:
                problems.append(f"[{table}] must be a table")
            else:
                out[table] = values
            continue
        for key, value in values.items():
            put(table, key, value, "")
    for text in overrides:
        table, key, value = parse_override(text)
        put(table, key, value, f"override {text!r}: ")
    for (table, key), value in (flags or {}).items():
        put(table, key, value, "")
    if problems and not collect:
        raise ConfigErrors(problems, where=where)
    return out


def build(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """``cls(**values)`` with a one-line error for a value of the wrong type."""
    try:
        return cls(**values)
    except TypeError as exc:
        raise HardnegError(str(exc), where=where, fix="check the config keys") from None


def require(values: dict[str, Any], table: Table, verb: str) -> None:
    """Every field without a default must be set (by flag, override or file)."""
    for f in table.fields():
        if f.required and values.get(f.name) in (None, ()):
            what = f"argument '{f.name.upper()}'" if f.positional else f"option '--{f.name.replace('_', '-')}'"
            raise HardnegError(f"Missing {what} (or {table.name}.{f.name} in --config)",
                               where=f"hardneg {verb}", fix=f"see `hardneg {verb} --help`")


def plain(obj: Any) -> Any:
    """A dataclass value as JSON-ready data (tuples as lists, paths as strings)."""
    if dataclasses.is_dataclass(obj):
        if hasattr(obj, "to_dict"):
            return plain(obj.to_dict())
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [plain(v) for v in obj]
    return str(obj) if isinstance(obj, Path) else obj


def resolved_text(config: dict[str, Any]) -> str:
    return json.dumps(plain(config), ensure_ascii=False)
