"""The lean path: one execution context served with buffers of its own, one stream, staging
through page-locked memory and, where the profile's shape is static, CUDA graphs; and the Step,
a chunk's work on such a context worked out once."""

import itertools
import logging
import math

import numpy as np

from dynamic_shapes.arrays import LEGACY_DEFAULT_STREAM, PAGE_LOCKED, PAGEABLE, Tensor
from dynamic_shapes.gpu import capture_graph, check_cuda, cudart, destroy_graph, page_locked_empty
from dynamic_shapes.serving.engine_io import output_specs
from dynamic_shapes.tensors import TensorSpec

log = logging.getLogger(__name__)

# Staging: a chunk of pageable memory is copied in up to MAX_PARTS parts of at least PART_NBYTES,
# so that the copies on the CPU and the transfers over the GPU's link overlap. Smaller parts
# would overlap more, and cost more calls than they save.
PART_NBYTES = 256 * 1024
MAX_PARTS = 4
# TensorRT reads and writes tensors at addresses aligned to 256 bytes; a GPU array that is not
# (a view that starts mid-allocation) is copied on the GPU instead of bound in place.
ALIGNMENT = 256


def must_wait(stream) -> bool:
    """Whether a context's stream must wait explicitly for the work a GPU array's producer
    queued on `stream` before reading the array: not for None (ready now), nor for the legacy
    default stream, after whose work CUDA runs the contexts' (blocking) streams by itself."""
    return stream is not None and stream != LEGACY_DEFAULT_STREAM


class Step:
    """A chunk's work on one context, worked out once: the streams of the GPU inputs' producers
    to wait for, the tensor addresses to bind, the copies in and out, and, where the context's
    shape is static, a CUDA graph of the copies and the inference. Each chunk of a prepared
    request is a Step, and so is a staged chunk on a profile of one shape."""

    def __init__(self, size, waits, inputs):
        self.size, self.waits, self.inputs = size, waits, inputs
        self.bindings, self.copies_in, self.copies_out = [], [], []
        self.graph = self.graph_exec = None

    def close(self):
        destroy_graph(self.graph, self.graph_exec)
        self.graph = self.graph_exec = None


class LeanExecutor:
    """Runs chunks on one context with preallocated buffers, one stream and, where the
    profile's shape is static, CUDA graphs. With `staging`, it serves pageable memory too,
    through page-locked staging buffers; a prepared request's own executors need none.

    `inputs` give each input's shape after the batch at the profile's max: the buffers hold
    that. A request of an engine with dynamic dimensions beyond the batch passes its own
    layout, (input specs, output specs) of its shapes after the batch, to run() and step();
    without one, a request has the shapes of `inputs`. `cuda_graphs` must be False where the
    profile lets a dimension beyond the batch vary: a graph replays the shape it captured."""

    def __init__(
        self, context, profile_index, batch_range, inputs, outputs, cuda_graphs, staging=True
    ):
        rt = cudart()
        self._context, self._inputs = context, inputs
        self._batch = None  # the batch of the input shapes last set on the context
        self._shaped_as = inputs  # the specs whose shapes after the batch were last set
        self._graph = self._graph_exec = self._stream = self._capture_stream = None
        self._staged = None  # the Step of a staged chunk, for a profile of one shape
        self._device, self._staging, self._bound = {}, {}, {}  # staging: name -> Tensor
        self._foreign = set()  # tensors bound to a caller's GPU memory, not the context's own
        self._events, self._part_events = [], []
        low, high = batch_range
        try:
            # A blocking stream: CUDA orders its work after the legacy default stream's, where
            # CuPy and PyTorch queue their work by default, so reading their arrays costs no
            # explicit wait.
            self._stream = check_cuda(rt.cudaStreamCreate(), "cudaStreamCreate")
            self._stream_handle = int(self._stream)
            if not context.set_optimization_profile_async(profile_index, self._stream_handle):
                raise RuntimeError(
                    f"TensorRT refused optimization profile {profile_index} for an execution "
                    "context; see its log above"
                )
            self.outputs = output_specs(context, inputs, outputs, high)
            self._batch = high
            for spec in (*inputs, *self.outputs):
                # Device memory for the profile's max shape, bound to the context, and
                # page-locked staging memory on the host.
                nbytes = high * spec.item_nbytes
                self._device[spec.name] = check_cuda(rt.cudaMalloc(nbytes), "cudaMalloc")
                if spec in inputs:
                    # The run before a graph's capture reads the inputs as they are: zeros are
                    # token ids, indices and masks in range, where leftover bytes need not be.
                    check_cuda(rt.cudaMemset(self._device[spec.name], 0, nbytes), "cudaMemset")
                self._bind(spec.name, self._device[spec.name])
                if staging:
                    buffer = page_locked_empty((high, *spec.item_shape), spec.dtype)
                    self._staging[spec.name] = Tensor(
                        buffer.shape, buffer.dtype, host=buffer, address=buffer.ctypes.data,
                        kind=PAGE_LOCKED,
                    )  # fmt: skip
            self._wait_event = self._new_event()
            if cuda_graphs and low == high:
                # Graphs are captured on a non-blocking stream: while a blocking stream is
                # captured, CUDA refuses every use of the legacy default stream, in any thread.
                self._capture_stream = check_cuda(
                    rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreate"
                )
                self._capture_graphs()
        except BaseException:
            self.close()
            raise

    def _new_event(self):
        rt = cudart()
        event = check_cuda(
            rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming), "cudaEventCreate"
        )
        self._events.append(event)
        return event

    def _bind(self, name, address):
        """Points the context's tensor at `address`, unless it points there already."""
        if self._bound.get(name) != address:
            if not self._context.set_tensor_address(name, address):
                raise RuntimeError(f"could not bind tensor {name}")
            self._bound[name] = address
            if address == self._device[name]:
                self._foreign.discard(name)
            else:
                self._foreign.add(name)

    def _set_shape(self, batch, inputs):
        if batch != self._batch or inputs is not self._shaped_as:
            for spec in inputs:
                shape = (batch, *spec.item_shape)
                if not self._context.set_input_shape(spec.name, shape):
                    raise RuntimeError(f"TensorRT refused input shape {shape}")
            self._batch, self._shaped_as = batch, inputs

    def output_specs(self, batch, inputs) -> list:
        """The outputs' specs for a request of `batch` items whose inputs have the shapes of
        `inputs` after the batch, as the context works them out; ValueError where an output
        would not fit the buffer sized at the profile's max shapes."""
        self._set_shape(batch, inputs)
        specs = []
        for largest in self.outputs:
            shape = tuple(self._context.get_tensor_shape(largest.name))
            spec = TensorSpec(largest.name, largest.dtype, shape[1:])
            if not shape or shape[0] != batch or min(shape) < 0:
                raise ValueError(f"TensorRT gives output {spec.name} the shape {shape}")
            if math.prod(shape[1:]) > math.prod(largest.item_shape):
                raise ValueError(
                    f"output {spec.name} of shape {shape} is larger than at the profile's max "
                    f"shapes, {(batch, *largest.item_shape)}; the dispatcher sizes its buffers "
                    "for the max"
                )
            specs.append(spec)
        return specs

    def _execute(self, stream):
        """Queues the inference on `stream`: its graph where it has one and the context's own
        buffers are bound (the graph holds them), else TensorRT's enqueue."""
        if self._graph_exec is not None and not self._foreign:
            check_cuda(cudart().cudaGraphLaunch(self._graph_exec, stream), "cudaGraphLaunch")
        else:
            self._enqueue(stream)

    def _enqueue(self, stream):
        if not self._context.execute_async_v3(stream):
            raise RuntimeError("TensorRT's execute_async_v3 failed; see its log above")

    def _queue(self, step, stream, execute):
        """Queues a step's copies in, its inference (`execute(stream)`) and its copies out."""
        for copy in step.copies_in:
            self._copy(*copy, stream)
        execute(stream)
        for copy in step.copies_out:
            self._copy(*copy, stream)

    def _capture_graphs(self):
        """Captures the inference for the profile's one batch size in a CUDA graph, and a staged
        chunk, its transfers from and to the staging buffers and its inference, in another."""
        # One plain run first: TensorRT sets up shape-dependent state on its first enqueue,
        # and that work must not end up in the graph.
        self._execute(self._stream_handle)
        self._synchronize()
        captured = self._capture(self._enqueue)
        if captured is None:
            return
        self._graph, self._graph_exec = captured
        if self._staging:
            inputs = [self._staging[spec.name] for spec in self._inputs]
            outputs = [self._staging[spec.name] for spec in self.outputs]
            self._staged = self.step(inputs, outputs, 0, self._batch)

    def _capture(self, enqueue):
        """A CUDA graph of the work `enqueue(stream)` queues, as (graph, executable graph); None
        where capture fails, and the work then runs without a graph."""
        try:
            return capture_graph(self._capture_stream, enqueue)
        except RuntimeError as error:
            log.warning("CUDA graph capture failed (%s); running without a graph", error)
            return None

    @property
    def uses_graph(self) -> bool:
        return self._graph_exec is not None

    def _parts(self, size, item_nbytes) -> list:
        """The (start, stop) item ranges a chunk of `size` items is staged in."""
        count = min(MAX_PARTS, size * item_nbytes // PART_NBYTES)
        if count <= 1:
            return [(0, size)]
        bounds = [size * part // count for part in range(count + 1)]
        return list(itertools.pairwise(bounds))

    def _copy(self, destination, source, nbytes, kind, stream=None):
        stream = self._stream if stream is None else stream
        check_cuda(
            cudart().cudaMemcpyAsync(destination, source, nbytes, kind, stream), "cudaMemcpyAsync"
        )

    def run(self, sources, targets, start, size, layout=None):
        """Serves items [start, start + size) of a request whose inputs are `sources` and whose
        outputs go to `targets` (arrays.Tensor, kinds set); `layout` as the class says."""
        if self._staged is not None and all(t.kind == PAGEABLE for t in (*sources, *targets)):
            self._run_staged(sources, targets, start, size)  # a static profile: its one shape
            return
        inputs, outputs = (self._inputs, self.outputs) if layout is None else layout
        self._set_shape(size, inputs)
        for spec, source in zip(inputs, sources, strict=True):
            self._send(spec, source, start, size)
        copies_out = []
        for spec, target in zip(outputs, targets, strict=True):
            if target.kind == PAGEABLE:
                self._bind(spec.name, self._device[spec.name])
                continue
            address, copy = self._placement(spec, target, start, size, into_context=False)
            self._bind(spec.name, address)
            if copy is not None:
                copies_out.append(copy)
        self._execute(self._stream_handle)
        for copy in copies_out:
            self._copy(*copy)
        staged = []  # (event or None, the caller's part, the staged part) of pageable outputs
        for spec, target in zip(outputs, targets, strict=True):
            if target.kind == PAGEABLE:
                staged += self._stage_out(spec, target, start, size)
        # Each part of a pageable output is copied out as soon as it has arrived, while the
        # next one is on its way; a part without an event waits for the whole chunk.
        synchronized = False
        for event, destination, part in staged:
            if event is not None:
                check_cuda(cudart().cudaEventSynchronize(event), "cudaEventSynchronize")
            elif not synchronized:
                self._synchronize()
                synchronized = True
            np.copyto(destination, part)
        if not synchronized:
            self._synchronize()

    def _synchronize(self):
        check_cuda(cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def _run_staged(self, sources, targets, start, size):
        """A pageable chunk of the profile's one shape: one copy into the staging buffers, one
        graph of the transfers and the inference, one copy out. Each of those calls lets go
        of Python's interpreter lock once, where staging in parts takes several calls a part:
        under threads, every such call is a wait to take the lock back."""
        stop = start + size
        for spec, source in zip(self._inputs, sources, strict=True):
            np.copyto(self._staging[spec.name].host, source.host[start:stop])
        self.run_step(self._staged)
        for spec, target in zip(self.outputs, targets, strict=True):
            np.copyto(target.host[start:stop], self._staging[spec.name].host)

    def _placement(self, spec, tensor, start, size, into_context) -> tuple:
        """Where a chunk of a page-locked or GPU tensor meets the context: the address to bind,
        and the copy (destination, source, bytes, kind) that moves the chunk, or None. A GPU
        chunk on TensorRT's 256-byte boundary is bound in place; any other goes through the
        context's own buffer."""
        kinds = cudart().cudaMemcpyKind
        address = tensor.address + start * spec.item_nbytes
        if tensor.on_gpu:
            if address % ALIGNMENT == 0:
                return address, None
            kind = kinds.cudaMemcpyDeviceToDevice
        else:
            kind = kinds.cudaMemcpyHostToDevice if into_context else kinds.cudaMemcpyDeviceToHost
        device, nbytes = self._device[spec.name], size * spec.item_nbytes
        copy = (device, address, nbytes, kind) if into_context else (address, device, nbytes, kind)
        return device, copy

    def _wait_for(self, stream):
        """Orders this context's stream after the work queued on `stream` so far."""
        rt = cudart()
        check_cuda(rt.cudaEventRecord(self._wait_event, stream), "cudaEventRecord")
        check_cuda(rt.cudaStreamWaitEvent(self._stream, self._wait_event, 0), "cudaStreamWaitEvent")

    def _send(self, spec, source, start, size):
        """Gets a chunk of an input where the context reads it: bound in place on the GPU, or
        copied into the context's buffer."""
        if source.on_gpu and must_wait(source.stream):
            self._wait_for(source.stream)
        if source.kind == PAGEABLE:
            device = self._device[spec.name]
            self._bind(spec.name, device)
            self._stage_in(spec, source.host[start : start + size], device)
            return
        address, copy = self._placement(spec, source, start, size, into_context=True)
        self._bind(spec.name, address)
        if copy is not None:
            self._copy(*copy)

    def _stage_out(self, spec, target, start, size) -> list:
        """Queues the copies of a chunk of a pageable output into the staging buffer, and
        returns the staged parts still to be copied on the host."""
        rt = cudart()
        device = self._device[spec.name]
        buffer, address = self._staging_array(spec), self._staging[spec.name].address
        destination = target.host[start : start + size]
        to_host = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        parts = self._parts(size, spec.item_nbytes)
        staged = []
        for number, (low, high) in enumerate(parts):
            part = low * spec.item_nbytes
            self._copy(address + part, device + part, (high - low) * spec.item_nbytes, to_host)
            event = None
            if len(parts) > 1:
                event = self._part_event(number)
                check_cuda(rt.cudaEventRecord(event, self._stream), "cudaEventRecord")
            staged.append((event, destination[low:high], buffer[low:high]))
        return staged

    def _staging_array(self, spec):
        """The staging buffer of `spec`'s tensor, seen as items of `spec`'s shape: smaller than
        the profile's max where a dimension beyond the batch is."""
        buffer = self._staging[spec.name].host
        if buffer.shape[1:] != spec.item_shape:
            items = buffer.size // math.prod(spec.item_shape)
            buffer = buffer.reshape(-1)[: items * math.prod(spec.item_shape)]
            buffer = buffer.reshape(items, *spec.item_shape)
        return buffer

    def step(self, sources, targets, start, size, layout=None) -> "Step":
        """Works out, once, how this context serves items [start, start + size) of a prepared
        request (page-locked and GPU tensors only); where the profile's shape is static, as a
        CUDA graph of the copies and the inference. `layout` as the class says."""
        inputs, outputs = (self._inputs, self.outputs) if layout is None else layout
        waits = {source.stream for source in sources if source.on_gpu}
        step = Step(size, [stream for stream in waits if must_wait(stream)], inputs)
        for spec, source in zip(inputs, sources, strict=True):
            address, copy = self._placement(spec, source, start, size, into_context=True)
            step.bindings.append((spec.name, address))
            if copy is not None:
                step.copies_in.append(copy)
        for spec, target in zip(outputs, targets, strict=True):
            address, copy = self._placement(spec, target, start, size, into_context=False)
            step.bindings.append((spec.name, address))
            if copy is not None:
                step.copies_out.append(copy)
        if self._graph_exec is not None:  # a static shape, whose inference replays as a graph
            self._apply(step)
            # TensorRT's own enqueue, not the inference graph: a graph is not launched into a
            # stream being captured.
            captured = self._capture(lambda stream: self._queue(step, stream, self._enqueue))
            if captured is not None:
                step.graph, step.graph_exec = captured
        return step

    def _apply(self, step):
        self._set_shape(step.size, step.inputs)
        for name, address in step.bindings:
            self._bind(name, address)

    def run_step(self, step):
        """Runs a chunk worked out by step(), and waits for it."""
        for stream in step.waits:
            self._wait_for(stream)
        if step.graph_exec is not None:
            check_cuda(cudart().cudaGraphLaunch(step.graph_exec, self._stream), "cudaGraphLaunch")
        else:
            self._apply(step)
            self._queue(step, self._stream_handle, self._execute)
        self._synchronize()

    def _part_event(self, number):
        """The event that marks the arrival of staged output part `number`."""
        while len(self._part_events) <= number:
            self._part_events.append(self._new_event())
        return self._part_events[number]

    def _stage_in(self, spec, source, device):
        """Copies pageable `source` through the staging buffer to `device`, part by part: each
        part's transfer runs while the next part is staged."""
        buffer, address = self._staging_array(spec), self._staging[spec.name].address
        to_gpu = cudart().cudaMemcpyKind.cudaMemcpyHostToDevice
        for low, high in self._parts(len(source), spec.item_nbytes):
            np.copyto(buffer[low:high], source[low:high])
            offset = low * spec.item_nbytes
            self._copy(device + offset, address + offset, (high - low) * spec.item_nbytes, to_gpu)

    def _destroy_graph(self):
        destroy_graph(self._graph, self._graph_exec)
        if self._staged is not None:
            self._staged.close()
        self._graph = self._graph_exec = self._staged = None

    def close(self):
        """Frees the graph, buffers, events and stream, and lets go of the context."""
        rt = cudart()
        if self._stream is not None:
            rt.cudaStreamSynchronize(self._stream)
        self._destroy_graph()
        for address in self._device.values():
            rt.cudaFree(address)
        for event in self._events:
            rt.cudaEventDestroy(event)
        for stream in (self._stream, self._capture_stream):
            if stream is not None:
                rt.cudaStreamDestroy(stream)
        self._stream = self._capture_stream = None
        self._device, self._staging = {}, {}
        self._events, self._part_events = [], []
        self._context = None
