"""How exactly ST's instruction masking matches the true instruction/query token boundary, measured on texts.

``Pooling(include_prompt=False)`` masks the number of tokens ST counts for the prompt alone
(``Transformer._get_prompt_length``); with BPE tokenizers the separator space can merge into the first query
token instead (see ``hardneg.llm.decoder``, "Exact instruction boundary"). ``prompt_boundary_report`` measures it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer



@dataclass(frozen=True)
class BoundaryReport:
    """How ST's prompt length compares with the true instruction/query token boundary on sample texts.

    ``st_prompt_length``: tokens ST masks (``Transformer._get_prompt_length``). For each text the true boundary
    is a range [lo, hi]: lo = leading tokens inside the instruction and its colon (special tokens included),
    hi = lo plus a token made only of the separator space (SentencePiece keeps "▁" apart before digits and rare
    characters); masking anywhere in [lo, hi] is exact. ``offsets`` counts ST length minus the nearest end of
    that range: 0 = exact, +1 = the first query token is masked too, -1 = an instruction token is pooled.
    """

    prompt: str
    st_prompt_length: int | None
    n_texts: int
    offsets: dict[int, int] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return set(self.offsets) <= {0}


def true_prompt_boundary(tok: Any, prompt: str, text: str) -> tuple[int, int]:
    """(lo, hi): leading tokens of ``prompt + text`` inside ``prompt.rstrip()`` / inside ``prompt``."""
    enc = tok(prompt + text, return_offsets_mapping=True)
    core = len(prompt.rstrip())
    lo = hi = 0
    for (start, end), tid in zip(enc["offset_mapping"], enc["input_ids"]):
        special = tid in tok.all_special_ids and start == end
        if special or end <= core:
            lo += 1
            hi += 1
        elif end <= len(prompt):
            hi += 1
        else:
            break
    return lo, hi


def prompt_boundary_report(model: SentenceTransformer, prompt: str, texts: Sequence[str]) -> BoundaryReport:
    """Compare the prompt length ST masks with the true boundary for each text (see ``BoundaryReport``)."""
    module = model[0]
    st_len = module._get_prompt_length(prompt) if prompt else 0
    tok = model.tokenizer
    offsets: Counter[int] = Counter()
    for t in texts:
        if st_len is None:
            break
        lo, hi = true_prompt_boundary(tok, prompt, t) if prompt else (0, 0)
        offsets[int(st_len) - hi if st_len > hi else int(st_len) - lo if st_len < lo else 0] += 1
    return BoundaryReport(prompt=prompt, st_prompt_length=st_len, n_texts=len(texts), offsets=dict(offsets))
