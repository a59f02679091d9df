"""The bare loop: a request through TensorRT's own API and nothing more, the floor every
serving path is held against."""

import numpy as np

from dynamic_shapes.gpu import capture_graph, check_cuda, cudart, destroy_graph, page_locked_empty
from dynamic_shapes.tensors import random_batch


class BareLoop:
    """The baseline: TensorRT's own API and nothing more. Buffers for the largest batch,
    addresses bound once, the shape set when it changes; per request a host-to-device copy,
    execute_async_v3, the device-to-host copies and a synchronize, each call's status checked
    as the dispatcher checks it. The request's data already sits in the host buffer:
    page-locked, or ordinary pageable memory."""

    def __init__(self, context, profile_index, spec, max_batch, pinned):
        import tensorrt as trt

        rt = cudart()
        engine = context.engine
        self.context, self.spec = context, spec
        self.outputs = {
            name: np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            for name in map(engine.get_tensor_name, range(engine.num_io_tensors))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT
        }
        self.stream = check_cuda(rt.cudaStreamCreate(), "cudaStreamCreate")
        self.device, self.host = {}, {}
        self.request = random_batch(spec, max_batch, seed=max_batch)
        self.select_profile(profile_index)
        self.resize(max_batch)
        for name, nbytes in self.nbytes.items():
            self.device[name] = check_cuda(rt.cudaMalloc(nbytes), "cudaMalloc")
            empty = page_locked_empty if pinned else np.empty
            self.host[name] = empty((nbytes,), np.uint8)
        self.host[spec.name][:] = self.request.reshape(-1).view(np.uint8)
        self.address = {name: array.ctypes.data for name, array in self.host.items()}
        self.bind()
        self.graph = self.graph_exec = None

    def resize(self, batch):
        """Sets the input shape, and with it how many bytes each copy moves."""
        shape = (batch, *self.spec.item_shape)
        if not self.context.set_input_shape(self.spec.name, shape):
            raise RuntimeError(f"TensorRT refused input shape {shape}")
        self.batch = batch
        self.nbytes = {self.spec.name: batch * self.spec.item_nbytes}
        for name, dtype in self.outputs.items():
            volume = int(np.prod(tuple(self.context.get_tensor_shape(name))))
            self.nbytes[name] = volume * dtype.itemsize

    def bind(self):
        for name, address in self.device.items():
            if not self.context.set_tensor_address(name, address):
                raise RuntimeError(f"could not bind tensor {name}")

    def select_profile(self, index):
        """Switches the context to another profile; shapes and addresses are set again."""
        if not self.context.set_optimization_profile_async(index, int(self.stream)):
            raise RuntimeError(f"could not select optimization profile {index}")
        self.batch = None
        self.bind()

    def run(self, batch, copies=True, inference=True):
        """One request: its copies and inference (the default), the copies alone (the floor
        the link sets), or the inference alone (the floor for GPU-resident requests)."""
        if batch != self.batch:
            self.resize(batch)
        self.enqueue(batch, copies, inference)
        check_cuda(cudart().cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def enqueue(self, batch, copies=True, inference=True):
        rt = cudart()
        h2d, d2h = (
            rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
            rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
        )
        name = self.spec.name
        if copies:
            check_cuda(
                rt.cudaMemcpyAsync(
                    self.device[name], self.address[name], self.nbytes[name], h2d, self.stream
                ),
                "cudaMemcpyAsync",
            )
        if inference and not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT's execute_async_v3 failed; see its log above")
        for name in self.outputs if copies else ():
            check_cuda(
                rt.cudaMemcpyAsync(
                    self.address[name], self.device[name], self.nbytes[name], d2h,
                    self.stream,
                ),
                "cudaMemcpyAsync",
            )  # fmt: skip

    def capture(self, batch):
        """Captures a request of `batch` items, its copies and inference, in a CUDA graph for
        replay(): the same work as run(batch), launched in one call."""
        self.run(batch)  # TensorRT's first enqueue for a shape sets up state outside the graph
        # enqueue() queues on self.stream, the stream being captured.
        self.graph, self.graph_exec = capture_graph(self.stream, lambda _: self.enqueue(batch))

    def replay(self):
        rt = cudart()
        check_cuda(rt.cudaGraphLaunch(self.graph_exec, self.stream), "cudaGraphLaunch")
        check_cuda(rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def last_result(self) -> tuple:
        """The inputs and (copies of) the outputs of the last run."""
        outputs = {
            name: self.host[name][: self.nbytes[name]]
            .view(dtype)
            .reshape(tuple(self.context.get_tensor_shape(name)))
            .copy()
            for name, dtype in self.outputs.items()
        }
        return self.request[: self.batch], outputs

    def close(self):
        rt = cudart()
        rt.cudaStreamSynchronize(self.stream)
        destroy_graph(self.graph, self.graph_exec)
        for address in self.device.values():
            rt.cudaFree(address)
        rt.cudaStreamDestroy(self.stream)
