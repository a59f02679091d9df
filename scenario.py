"""
The scenario: images of shape (3, 28, 28), an identity model over them, and three use cases,
each with its own optimization profile in one engine.

TensorRT is not imported here (Polygraphy imports it lazily), so the scenario, and everything
that needs no GPU, works on a machine without one.
"""

from pathlib import Path

import numpy as np
from polygraphy.backend.trt import Profile

from dynamic_shapes.serving.planning import describe_batch_ranges
from dynamic_shapes.tensors import TensorSpec, random_batch

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "dynamic_identity.onnx"
ENGINE_PATH = HERE / "dynamic_identity.engine"
# A compute-heavy network with the same input, for what the identity cannot show (kernels whose
# choice depends on the batch size, activation memory). 28 MB of weights: built on demand.
CONVNET_PATH = HERE / "dynamic_convnet.onnx"
# The models the scripts know by name.
MODELS = {"identity": MODEL_PATH, "convnet": CONVNET_PATH}

# A transformer encoder whose batch and sequence length are both dynamic: the dynamic shapes people
# bring to TensorRT beyond the batch. Not in MODELS: the scripts serve a model with one input whose
# batch alone is dynamic, and this one has two inputs of two dynamic dimensions. 14 MB of seeded
# weights, built on demand (build_model.py --model transformer).
TRANSFORMER_PATH = HERE / "dynamic_transformer.onnx"
# Its inputs, int32 [batch, sequence] each, and its output, float32 [batch, sequence, hidden]. The
# names are those of Hugging Face's exported encoders, so a user's own export reads the same.
TOKEN_IDS_NAME = "input_ids"
ATTENTION_MASK_NAME = "attention_mask"
HIDDEN_STATES_NAME = "last_hidden_state"
VOCABULARY_SIZE = 1000
# The longest sequence its position embeddings cover: a profile's max sequence is at most this.
MAX_SEQUENCE = 512
HIDDEN_SIZE = 256
# Its profiles, as Polygraphy's options give them (each option once per profile, in order): short
# online requests one at a time; batched requests of any length, tuned for 8 sequences of 128;
# and full offline batches of the longest sequences.
TRANSFORMER_PROFILE_OPTIONS = (
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[1,16] attention_mask:[1,16] "
    "--trt-max-shapes input_ids:[1,64] attention_mask:[1,64] "
    "--trt-min-shapes input_ids:[1,1] attention_mask:[1,1] "
    "--trt-opt-shapes input_ids:[8,128] attention_mask:[8,128] "
    "--trt-max-shapes input_ids:[32,512] attention_mask:[32,512] "
    "--trt-min-shapes input_ids:[32,512] attention_mask:[32,512]"
)

INPUT_NAME = "X"
OUTPUT_NAME = "Y"
IMAGE_SHAPE = (3, 28, 28)
MODEL_INPUT = TensorSpec(INPUT_NAME, np.dtype(np.float32), IMAGE_SHAPE)

# The scenario table: per use case, the (min, opt, max) batch size of its profile, in
# profile-index order. `opt` is the batch TensorRT tunes its kernels for; a batch outside
# [min, max] is refused.
BATCH_SIZES = {
    # Online, one image at a time. min == opt == max gives TensorRT the least to cover.
    "low latency": (1, 1, 1),
    # Requests batched on the fly; batches of 4 are the most common, hence opt.
    "dynamic batching": (1, 4, 32),
    # Bulk processing, always in full batches of 128.
    "offline": (128, 128, 128),
}


def profile(spec: TensorSpec, low: int, opt: int, high: int) -> Profile:
    """A Polygraphy Profile for `spec`'s input, with these min, opt and max batch sizes."""
    return Profile().add(
        spec.name,
        min=(low, *spec.item_shape),
        opt=(opt, *spec.item_shape),
        max=(high, *spec.item_shape),
    )


def profiles_for(spec: TensorSpec) -> dict:
    """The scenario's profiles (use case -> Profile) for a model whose input is `spec`."""
    return {use_case: profile(spec, *sizes) for use_case, sizes in BATCH_SIZES.items()}


# What example.py builds: e.g. "dynamic batching" is X min=(1, 3, 28, 28), opt=(4, 3, 28, 28),
# max=(32, 3, 28, 28).
PROFILES = profiles_for(MODEL_INPUT)


def scenario_ranges() -> dict:
    """Each use case's (min, max) batch size."""
    return {use_case: (low, high) for use_case, (low, _, high) in BATCH_SIZES.items()}


def check_batch_fits(use_case: str, batch: int) -> None:
    """Refuses a batch size outside the use case's profile, naming the valid ranges."""
    low, high = scenario_ranges()[use_case]
    if not low <= batch <= high:
        raise ValueError(
            f"batch {batch} does not fit the {use_case} profile; "
            f"the profiles accept batch sizes: {describe_batch_ranges(scenario_ranges())}"
        )


def random_images(batch: int, seed: int = 0) -> np.ndarray:
    """A batch of random images for the model's input."""
    return random_batch(MODEL_INPUT, batch, seed)


def random_tokens(batch: int, sequence: int, seed: int = 0) -> dict:
    """The transformer's inputs for `batch` sequences of `sequence` random tokens, none of them
    padding: {input name: int32 array [batch, sequence]}."""
    rng = np.random.default_rng(seed)
    return {
        TOKEN_IDS_NAME: rng.integers(0, VOCABULARY_SIZE, (batch, sequence), dtype=np.int32),
        ATTENTION_MASK_NAME: np.ones((batch, sequence), np.int32),
    }


def check_identity(inputs: np.ndarray, outputs: np.ndarray) -> None:
    """Raises unless the outputs are bit-for-bit the inputs: what an identity model must return."""
    if outputs.shape != inputs.shape or not np.array_equal(outputs, inputs):
        raise AssertionError(
            f"output {OUTPUT_NAME} {outputs.shape} differs from input {INPUT_NAME} {inputs.shape}"
        )


def check_model_fits_profiles(model_path) -> None:
    """Raises ValueError unless the model's input is the one the profiles are written for."""
    from dynamic_shapes.onnx_inputs import read_model_input

    found = read_model_input(model_path)
    if found != MODEL_INPUT:
        raise ValueError(
            f"{model_path} takes {found.describe()}, but the profiles are written for "
            f"{MODEL_INPUT.describe()}"
        )
