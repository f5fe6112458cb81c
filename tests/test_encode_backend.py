"""Where encoders run (`--encode`, `[encode]`): the value, the load_encoder hook, and keys that never see it."""
from __future__ import annotations

import pytest

from hardneg.encode.backend import EncodeBackend, encoder_factory, release_workers
from hardneg.encode.encoder import EncoderSpec, load_encoder
from hardneg.errors import ConfigErrors


def test_parse_validate_and_record():
    assert EncodeBackend.parse("local") == EncodeBackend()
    b = EncodeBackend.parse("ray:ray_address=auto,workers=4,cpus-per-worker=2,chunk_size=512")
    assert b.to_dict() == {"backend": "ray", "ray_address": "auto", "workers": 4, "cpus_per_worker": 2.0,
                           "chunk_size": 512}
    assert EncodeBackend(workers=3).to_dict() == {"backend": "local"}  # ray's settings are ignored by local
    for bad in ("gpu", "ray:workers=0", "ray:workers=x", "ray:cpus_per_worker=0", "ray:nope=1", "ray:workers"):
        with pytest.raises(ConfigErrors):
            EncodeBackend.parse(bad)


def test_load_encoder_goes_through_the_installed_factory():
    asked, released = [], []

    class Spy:
        def release(self):
            released.append(True)

    def factory(s, cache_dir):
        asked.append((s.model, cache_dir))
        return Spy()

    spec = EncoderSpec(model="hash")
    with encoder_factory(factory):
        enc = load_encoder(spec, None)
        assert isinstance(enc, Spy)
        release_workers(enc)
    assert asked == [("hash", None)] and released == [True]
    assert type(load_encoder(spec)).__name__ == "HashEncoder"  # the block's end restores local encoding
    release_workers(load_encoder(spec))  # local encoders hold no workers: nothing to do


def test_encode_table_stays_out_of_run_keys():
    from hardneg.experiments.config import config_from_dict

    local = config_from_dict({})
    on_ray = config_from_dict({"encode": {"backend": "ray", "ray_address": "auto", "workers": 8}})
    assert on_ray.identity() == local.identity() and "encode" not in local.identity()
    assert on_ray.to_dict()["encode"] == {"backend": "ray", "ray_address": "auto", "workers": 8}
    assert "encode" not in local.to_dict()  # configs resolved before [encode] existed keep their bytes
    with pytest.raises(ConfigErrors, match=r"\[encode\] backend='gpu'"):
        config_from_dict({"encode": {"backend": "gpu"}})
