"""
The engine served by Triton's Python backend, through the dispatcher: copied as `1/model.py`
into the model repository serve.py writes (dynamic_shapes.triton.write_python_repository),
beside the engine and a copy of the dynamic_shapes package, so that the repository runs as it
is in NVIDIA's Triton container (which must carry the TensorRT the engine was built with). It
imports triton_python_backend_utils, which only Triton provides: it lives here, beside the
library rather than in it.

Triton's dynamic batcher hands `execute` the requests it gathered; they run as one batch, which
the dispatcher splits among the profiles as it splits any batch, so that a batch no profile
accepts (33 to 127 with the scenario's) is served, not refused. A request the dispatcher
refuses gets its message back with INVALID_ARG, and the others in the batch are served.

A model with dynamic dimensions after the batch (a transformer's sequence length) is served
the same way. Triton's batcher gathers only requests of equal shapes after the batch (the
config sets no ragged batching; dynamic_shapes/triton.py says why), and the requests handed
over together are joined by their shapes all the same, so that each group is one batch. Where
the config's `pad_with_mask` parameter names the attention mask, a sequence length no profile
holds is padded up to one that does, and its outputs cut back; without it, refused.
"""

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the dynamic_shapes package copied beside this file


class TritonPythonModel:
    def initialize(self, args):
        from dynamic_shapes.dispatch import Dispatcher
        from dynamic_shapes.engines import load_engine
        from dynamic_shapes.gpu import check_cuda, cudart, require_gpu_stack

        require_gpu_stack()  # what is missing, said in words, rather than an import's traceback
        # Triton places one instance on each GPU of its instance group; this one serves there.
        device = int(args["model_instance_device_id"])
        check_cuda(cudart().cudaSetDevice(device), f"cudaSetDevice({device})")
        parameters = json.loads(args["model_config"])["parameters"]
        engine = load_engine(HERE / parameters["engine"]["string_value"])
        contexts = int(parameters["contexts_per_profile"]["string_value"])
        mask = parameters.get("pad_with_mask", {}).get("string_value") or None
        # Triton reports the model ready only once this returns: the engine is loaded and every
        # context and buffer is in place, with the graphs of the profiles of one shape. The
        # graphs of the shapes sent again are left off, as by default (docs/serving.md says why).
        self.dispatcher = Dispatcher(engine, contexts_per_profile=contexts, pad_with_mask=mask)

    def execute(self, requests):
        from dynamic_shapes.serving.request_checks import check_request, check_shaped_request

        dispatcher = self.dispatcher
        dynamic = any(-1 in spec.item_shape for spec in dispatcher.inputs)
        check = check_shaped_request if dynamic else check_request
        names = [spec.name for spec in dispatcher.inputs]
        responses, feeds = [None] * len(requests), {}
        for index, request in enumerate(requests):
            feed = {name: pb_utils.get_input_tensor_by_name(request, name) for name in names}
            try:
                missing = [name for name, tensor in feed.items() if tensor is None]
                if missing:
                    raise ValueError(f"no input {missing}; this model has inputs {names}")
                feed = {name: tensor.as_numpy() for name, tensor in feed.items()}
                check(feed, dispatcher.inputs)
            except ValueError as error:
                responses[index] = refusal(error)
                continue
            feeds[index] = feed
        # One batch per shape after the batch: requests of equal shapes are joined.
        groups = {}
        for index, feed in feeds.items():
            groups.setdefault(tuple(feed[name].shape[1:] for name in names), {})[index] = feed
        for group in groups.values():
            try:
                serve(dispatcher, names, group, responses)
            except ValueError as error:  # a shape no profile holds, said per request
                for index in group:
                    responses[index] = refusal(error)
        return responses

    def finalize(self):
        self.dispatcher.close()


def serve(dispatcher, names, feeds, responses):
    """Serves requests of equal shapes after the batch as one batch, each its own outputs."""
    if len(feeds) == 1:  # nothing to join
        (batch,) = feeds.values()
    else:
        batch = {name: np.concatenate([f[name] for f in feeds.values()]) for name in names}
    outputs = dispatcher.infer(batch)
    if not isinstance(outputs, dict):
        outputs = {dispatcher.output_names[0]: outputs}
    start = 0
    for index, feed in feeds.items():
        stop = start + len(feed[names[0]])
        tensors = [pb_utils.Tensor(name, array[start:stop]) for name, array in outputs.items()]
        responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        start = stop


def refusal(error):
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
    )
