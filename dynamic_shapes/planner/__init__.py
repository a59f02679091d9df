"""
Planning optimization profiles from a workload, one module a concern (each imports only those
above it in this list, and the library's floors below):

    workloads    a workload (the shapes of a stream of requests): files, histogram, summary
    generators   seeded workloads: the walkthrough's scenario, a transformer service
    recorder     appending the shapes a running service serves to a workload file, bounded
    candidates   candidate profile sets cut where the workload's shapes cluster
    scoring      a candidate's latency and throughput over the workload, from a replay's
                 per-shape timings; candidates ranked
    report       the ranked candidates as text
    replay       each candidate's engine built and the workload replayed on it through the
                 dispatcher, outputs checked against ONNX Runtime; the planner as one function

Only replay needs a GPU, and imports TensorRT (through the engines and the dispatcher) where it
builds or serves an engine; everything else here runs without one. plan_profiles.py is the
command (docs/planning.md is the guide).
"""
