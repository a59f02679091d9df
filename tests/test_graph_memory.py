"""Giving back the GPU memory CUDA keeps for freed graphs: best effort, never an error of its
own for the caller that freed them."""

import logging
import types

from dynamic_shapes import gpu


def test_a_refused_trim_is_logged_not_raised(monkeypatch, caplog):
    from cuda.bindings import runtime

    refusing = types.SimpleNamespace(
        cudaError_t=runtime.cudaError_t,
        cudaGetDevice=lambda: (runtime.cudaError_t.cudaSuccess, 0),
        cudaDeviceGraphMemTrim=lambda device: (runtime.cudaError_t.cudaErrorInvalidValue,),
    )
    monkeypatch.setattr(gpu, "cudart", lambda: refusing)
    with caplog.at_level(logging.WARNING, logger="dynamic_shapes.gpu"):
        gpu.trim_graph_memory()
    assert caplog.messages == [
        "the GPU memory CUDA keeps for graphs stays kept: cudaDeviceGraphMemTrim failed: "
        "cudaErrorInvalidValue"
    ]
