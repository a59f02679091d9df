"""The engines a benchmark measures, built or reused once per model and loaded afresh for
each variant, and closing what a section opened on them."""

from dynamic_shapes.engines import batch_ranges, create_contexts, load_or_build_engine
from dynamic_shapes.measure.bare_loop import BareLoop
from dynamic_shapes.serving.planning import describe_batch_ranges


class Engines:
    """The model's engines, serialized: the narrow profiles the caller names (the scenario's
    three: use case -> Polygraphy Profile), and one wide profile. Each is saved beside the model
    (or in `engine_dir`) and reused while its record holds. TensorRT lets only one live
    execution context use each profile of an engine, so every variant that needs contexts loads
    an engine of its own from these bytes. `ranges` holds each narrow profile's (min, max) batch
    size, as the engine reports it, and `accepted` says them in the use cases' names."""

    def __init__(self, model, spec, engine_dir, progress, narrow: dict, wide):
        from polygraphy.backend.trt import bytes_from_engine
        from polygraphy.logger import G_LOGGER

        self.spec, self.lines = spec, []
        folder = engine_dir or model.parent
        serialized = {}
        for kind, suffix, profiles in [
            ("narrow", ".engine", narrow),
            ("wide", ".wide.engine", {"wide": wide}),
        ]:
            # Polygraphy's build log would bury the report; its warnings and errors still show.
            with G_LOGGER.verbosity(G_LOGGER.WARNING):
                engine, how = load_or_build_engine(
                    model, folder / f"{model.stem}{suffix}", profiles, progress=progress
                )
            progress(how)
            self.lines.append(how)
            serialized[kind] = bytes_from_engine(engine)
            if kind == "narrow":
                self.ranges = batch_ranges(engine, spec.name)
                self.accepted = describe_batch_ranges(dict(zip(narrow, self.ranges, strict=True)))
        self.narrow, self.wide = serialized["narrow"], serialized["wide"]

    @staticmethod
    def load(serialized):
        from polygraphy.backend.trt import engine_from_bytes

        return engine_from_bytes(serialized)

    def bare_loops(self, serialized, pinned) -> list:
        """A BareLoop per profile of a fresh engine, each on a context of its own."""
        engine = self.load(serialized)
        contexts = create_contexts(engine, engine.num_optimization_profiles)
        return [
            BareLoop(context, index, self.spec, high, pinned)
            for index, (context, (_, high)) in enumerate(
                zip(contexts, batch_ranges(engine, self.spec.name), strict=True)
            )
        ]


def close_all(closables) -> None:
    for closable in closables:
        closable.close()
