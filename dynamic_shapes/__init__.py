"""
What the scripts beside this package share, one module a concern. Modules import downwards only:

    results       the results pages rendered from results/ (results_pages,    (results floor)
                  results_text, results_figures) and the targets they are held to (targets)
    options       the options several scripts take, declared once              (script floor)
    planner       profiles planned from a workload: workloads, recording,      (planning floor)
                  candidates, scoring, the report
    stress        the dispatcher under load and through lifecycles (stress.py) (measuring floor)
    measure       the walkthrough's trade-offs measured (benchmark.py)         (measuring floor)
    triton        Triton model repositories for a saved engine                 (serving floor)
    dispatch      where the Dispatcher is imported from                        (serving floor)
    serving       serving requests of any shape on an engine's profiles, a module a concern
    environment   the GPU, driver, versions and commit a run measured
    profiles      optimization profiles in Polygraphy's options and in a JSON file
    arrays        where a request's arrays live: pageable, page-locked, GPU
    engines       building, saving, loading and reusing an engine; contexts
    reference     ONNX Runtime on the CPU, and comparing results with it
    onnx_inputs   what an ONNX model's input and outputs look like
    gpu           whether TensorRT, cuda-bindings and a GPU are usable; CUDA helpers
    cli           one convention for every script: errors, exit codes, progress
    files         writing files so that an interruption loses nothing
    tensors       a tensor's name, dtype and per-item shape; random batches

The scenario itself (the three use cases and their profiles) is scenario.py, beside
example.py, where the walkthrough's reader finds it. The package imports no script: the
scripts pass the scenario's names in, and what they leave out comes from the engine (its
inputs; profiles named "profile 0", "profile 1", ...). The model Triton's Python backend runs,
which only Triton can import, is triton_model/model.py, outside the package. TensorRT and CUDA
are imported only inside the functions that need them, so everything that needs no GPU works
without one.
"""
