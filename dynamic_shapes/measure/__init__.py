"""
Measuring what the walkthrough's trade-offs cost on a GPU: what benchmark.py runs, one module
a concern, importing downwards only:

    by_shape          the shapes mode: any dynamic dimensions, both routing rules compared
    report            the results as tables, and the trade-offs side by side
    plot              the latencies as a bar chart
    sections          the sections' names, default batch sizes and the function measuring each
    trade_offs        sections 1 to 5: profiles, shape and profile switching, memory, runners
    contexts          section 7: concurrent requests on one context or several
    convenience       section 6: TrtRunner, the dispatcher's paths and the floors under them
    engines           the model's engines, built once and loaded afresh for each variant
    reference_check   every measured path's outputs checked against ONNX Runtime
    bare_loop         a request through TensorRT's own API and nothing more
    timing            variants timed in rotating rounds; statistics; cProfile's top functions

TensorRT, CUDA and Polygraphy's runners are imported inside the functions that need them:
the report reads and prints results anywhere.
"""
