"""The builder's timing cache, as build_engine hands it to Polygraphy: read where the file
exists, written after every build that names it, untouched by one that does not (CPU only:
Polygraphy's loaders are stood in for and their arguments checked)."""

import sys
import types

from dynamic_shapes import engines


def test_a_build_reads_the_cache_once_it_exists_and_writes_it_each_time(monkeypatch, tmp_path):
    from polygraphy.backend import trt as polygraphy_trt

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.0"))
    monkeypatch.setattr(polygraphy_trt, "network_from_onnx_path", lambda path: "network")
    monkeypatch.setattr(polygraphy_trt, "CreateConfig", lambda **options: options)
    monkeypatch.setattr(polygraphy_trt, "PostprocessConfig", lambda config, change: config)
    builds = []

    def engine_from_network(network, config, save_timing_cache=None):
        builds.append((config["load_timing_cache"], save_timing_cache))
        return "engine"

    monkeypatch.setattr(polygraphy_trt, "engine_from_network", engine_from_network)
    cache = tmp_path / "timing.cache"
    assert engines.build_engine("m.onnx", {}, cache) == "engine"
    cache.write_bytes(b"the first build's timings")
    engines.build_engine("m.onnx", {}, cache)
    engines.build_engine("m.onnx", {})
    # The first build finds no file to read (Polygraphy would warn), and writes one.
    assert builds == [(None, str(cache)), (str(cache), str(cache)), (None, None)]
