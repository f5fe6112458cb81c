"""``hardneg browse``: one self-contained HTML page to inspect mined sets side by side (see ``page.py``)."""
from __future__ import annotations

from hardneg.browse.data import Extras, MinedInput, build_page_data, expand
from hardneg.browse.page import check_page_output, collect, render_page, write_browse

__all__ = ["Extras", "MinedInput", "build_page_data", "check_page_output", "collect", "expand", "render_page",
           "write_browse"]
