"""``NAME[:key=value,...]``: the one text form of a backend with options (``--search faiss-ivf:nlist=256,nprobe=32``,
``--encode ray:workers=8``). Splitting only; each spec converts and validates its own values."""
from __future__ import annotations

from hardneg.errors import ConfigErrors


def split_options(text: str, keys: tuple[str, ...], *, what: str, where: str) -> tuple[str, dict[str, str]]:
    """``(name, {key: value})`` of ``text``; keys are written with ``_`` or ``-``; a part that is not
    ``key=value`` with a key of ``keys`` is a one-line config error naming the valid keys."""
    name, _, rest = text.strip().partition(":")
    kw: dict[str, str] = {}
    for part in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in keys:
            raise ConfigErrors([f"bad {what} option {part!r} (give key=value with a key of {', '.join(keys)})"],
                               where=where)
        kw[key] = value.strip()
    return name.strip(), kw
