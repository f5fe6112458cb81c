"""Past one machine: Ray encoding (actor pool) and sharded exact search with a stable top-k merge.

Ray is an optional extra (``pip install "ray[data]"``); it is imported only when one of these is called.
See ``docs/scale.md`` for starting a cluster and pointing hardneg at it.
"""
from __future__ import annotations

from hardneg.scale.ray_mining import RayEncoder, build_pool_ray, encode_ray, encoding
from hardneg.search.ray_backend import RAY_ADDRESS_ENV, import_ray, init_ray, ray_search, ray_search_fn

__all__ = ["RAY_ADDRESS_ENV", "RayEncoder", "build_pool_ray", "encode_ray", "encoding", "import_ray", "init_ray",
           "ray_search", "ray_search_fn"]
