"""
Putting the dispatcher under load and through many lifecycles: what stress.py runs, one module
a concern, importing downwards only:

    verdicts      the checks passed or failed, and the figures only reported
    processes     the load from one process or several at once; their shares combined
    load          one process's share of the load: threads sending requests, each output checked
    lifecycle     dispatchers, prepared requests and runners created, used and freed, many times
    memory_use    GPU memory in use and the process's resident host memory
"""
