"""Where the dispatcher is imported from: `from dynamic_shapes.dispatch import Dispatcher`, as
docs/serving.md shows. It lives in dynamic_shapes.serving, a module a concern."""

from dynamic_shapes.serving.dispatcher import Dispatcher
from dynamic_shapes.serving.prepared import PreparedRequest

__all__ = ["Dispatcher", "PreparedRequest"]
