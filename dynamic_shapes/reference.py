"""The independent reference an engine's results are checked against: ONNX Runtime, on the CPU.

Tolerance, for models that are not the identity (whose results are checked bit for bit): the
engines here compute in FP32 (Polygraphy leaves TF32 off), as ONNX Runtime does, but sum the
products of each convolution or matrix product in another order and with other kernels. A dot
product of n terms then differs by about sqrt(n) * 2**-24 relative (about 4e-6 for the 4,608
terms of a 3x3 convolution over 512 channels), and a handful of such layers in a row stay well
below 1e-4 on outputs of order 1, the scale of the convnet's. A real fault (a wrong profile,
a stale or misplaced buffer, a wrong shape) moves outputs by far more than that.
"""

import numpy as np

RTOL = ATOL = 1e-4


class OnnxRuntimeReference:
    """Runs an ONNX model with ONNX Runtime's CPU provider."""

    def __init__(self, model_path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(
            str(model_path), providers=["CPUExecutionProvider"]
        )
        self.output_names = [output.name for output in self.session.get_outputs()]

    def __call__(self, feed: dict) -> dict:
        """{output name: array} for {input name: array}."""
        return dict(zip(self.output_names, self.session.run(None, feed), strict=True))


def mismatch(outputs: dict, expected: dict, exact: bool) -> str | None:
    """None where every expected output is there and matches, bit for bit or within the
    tolerance above; otherwise what differs, in words."""
    for name, want in expected.items():
        got = outputs.get(name)
        if got is None:
            return f"output {name} is missing"
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"output {name} is {got.dtype} {got.shape}, expected {want.dtype} {want.shape}"
        if exact:
            wrong = np.count_nonzero(got != want)
            if wrong:
                return f"output {name} differs from the reference in {wrong} of {got.size} values"
            continue
        error = np.abs(got.astype(np.float64) - want)
        wrong = np.count_nonzero(~(error <= ATOL + RTOL * np.abs(want)))
        if wrong:
            return (
                f"output {name} differs from the reference in {wrong} of {got.size} values "
                f"beyond rtol={RTOL}, atol={ATOL} (largest difference {np.nanmax(error):.3g})"
            )
    return None


def largest_difference(outputs: dict, expected: dict) -> float:
    """The largest absolute difference between matching outputs."""
    return max(
        float(np.max(np.abs(outputs[name].astype(np.float64) - want)))
        for name, want in expected.items()
    )
