"""Each profile's pool of free executors: a request takes one once it is free, and learns there
that the dispatcher was closed."""

DISPATCHER_CLOSED = "its Dispatcher is closed; prepare the request again"
CLOSED_WHILE_WAITING = "this Dispatcher was closed while the request waited"


def take(pool, closed_message: str):
    """An executor from a profile's pool, once one is free; RuntimeError(closed_message) where
    the dispatcher was closed, which leaves None in its pools."""
    executor = pool.get()
    if executor is None:
        pool.put(None)  # for the next request that waits
        raise RuntimeError(closed_message)
    return executor
