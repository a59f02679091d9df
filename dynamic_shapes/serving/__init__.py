"""
Serving requests of any shape on an engine's optimization profiles (docs/serving.md is the
guide). One module a concern, importing downwards only:

    dispatcher        the Dispatcher: contexts for every profile, requests of any shape
    prepared          prepared requests: a request's chunks worked out once, run again and again
    pools             each profile's pool of free executors
    lean_executor     one context served with its own buffers, stream and CUDA graphs
    runner_executor   one context served through a Polygraphy TrtRunner
    request_checks    a request's arrays checked against the engine's tensors; where each lives
    host_memory       whether a request's outputs fit in the host memory available
    planning          which profile serves a batch, and how a batch is split into chunks
    padding           a request padded up to a profile's shapes, its outputs cut back
    engine_io         what an engine's inputs and outputs are, and a new context's profile
    routing           which profile serves a request over every dimension; splitting,
                      padding and refusal

TensorRT and CUDA are imported when a Dispatcher is created; planning, routing, padding and
request checks work without them.
"""
