#!/usr/bin/env python3
"""Merge the six NanoDet head outputs of a tf2onnx-converted model into one tensor.

The converted graph ends in one score tensor [1, N, 80] (sigmoid already applied)
and one box tensor [1, N, 44] (4 sides x 11 distribution bins, raw logits) per
stride. This script appends Concat nodes so the model has a single output

    output: [1, 3549, 124]   columns 0..79 = class scores, 80..123 = box logits
                             rows: stride 8 (2704), then 16 (676), then 32 (169),
                             row = y * grid + x inside each stride block

renames the input to `input`, and checks numerically (onnxruntime) that the merged
output equals the six original tensors.

tf2onnx names its constants and intermediate tensors differently from run to run
(the graph itself is the same), so the result is also canonicalised to make the
file byte-for-byte reproducible: the constant-only subgraph (the Reshape target
shapes) is folded into initializers, equal initializers and duplicate nodes are
merged, nodes are put in a name-independent topological order and every tensor,
node and initializer is renamed after its position in that order.

usage: merge_outputs.py SRC.onnx DST.onnx
"""
import hashlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

INPUT_SIZE = 416
NUM_CLASSES = 80
BOX_COLS = 44  # 4 sides x (reg_max 10 + 1) bins
STRIDES = (8, 16, 32)


def run(path, feed_name, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {feed_name: x})
    return {o.name: v for o, v in zip(sess.get_outputs(), outs)}


def fold_constants(graph):
    """Evaluate the nodes that do not depend on the graph input; keep their results as initializers."""
    known = {i.name for i in graph.initializer}
    const_nodes, live = [], []
    for node in graph.node:  # graph.node is topologically sorted
        if all(not i or i in known for i in node.input):
            const_nodes.append(node)
            known.update(node.output)
        else:
            live.append(node)
    if not const_nodes:
        return
    produced = {o for n in const_nodes for o in n.output}
    needed = sorted({i for n in live for i in n.input if i in produced}
                    | {o.name for o in graph.output if o.name in produced})
    sub = helper.make_graph(const_nodes, "constants", [], [helper.make_empty_tensor_value_info(n) for n in needed],
                            initializer=list(graph.initializer))
    values = ReferenceEvaluator(helper.make_model(sub, opset_imports=[helper.make_opsetid("", 13)])).run(None, {})
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in zip(needed, values))
    del graph.node[:]
    graph.node.extend(live)


def canonicalize(graph, input_name, output_name):
    """Rename everything after a name-independent topological order; merge duplicates."""
    inits = {i.name: i for i in graph.initializer}
    digest = {n: hashlib.sha256(bytes([i.data_type]) + repr(list(i.dims)).encode()
                                + numpy_helper.to_array(i).tobytes()).hexdigest() for n, i in inits.items()}
    alias = {"": ""}  # original tensor name -> canonical name
    alias[input_name] = "input"
    init_by_digest, new_inits = {}, []

    def ref(name):
        if name in alias:
            return alias[name]
        d = digest[name]  # an initializer
        if d not in init_by_digest:
            init_by_digest[d] = f"c{len(init_by_digest)}"
            init = onnx.TensorProto()
            init.CopyFrom(inits[name])
            init.name = init_by_digest[d]
            new_inits.append(init)
        return init_by_digest[d]

    def key(node):
        ins = tuple(alias[i] if i in alias else "#" + digest[i] for i in node.input)
        attrs = b"".join(a.SerializeToString(deterministic=True) for a in sorted(node.attribute, key=lambda a: a.name))
        return (node.op_type, node.domain, ins, attrs)

    pending = list(graph.node)
    out_nodes, seen = [], {}
    ready_names = set(alias) | set(inits)
    while pending:
        ready = [n for n in pending if all(i in ready_names or i in alias for i in n.input)]
        if not ready:
            sys.exit("graph has a cycle or a dangling input")
        node = min(ready, key=key)
        pending.remove(node)
        k = key(node)
        if k in seen:  # duplicate computation: reuse the earlier outputs
            for mine, theirs in zip(node.output, seen[k].output):
                alias[mine] = theirs
            continue
        idx = len(out_nodes)
        new = onnx.NodeProto()
        new.op_type, new.domain, new.name = node.op_type, node.domain, f"{node.op_type}_{idx}"
        new.input.extend(ref(i) for i in node.input)
        for j, o in enumerate(node.output):
            alias[o] = output_name if o == output_name else (f"t{idx}_{j}" if o else "")
            new.output.append(alias[o])
        new.attribute.extend(sorted(node.attribute, key=lambda a: a.name))
        seen[k] = new
        out_nodes.append(new)
    del graph.node[:]
    graph.node.extend(out_nodes)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    graph.input[0].name = "input"
    graph.name = "nanodet"
    del graph.value_info[:]


def main(src, dst):
    model = onnx.load(src)
    graph = model.graph
    if len(graph.input) != 1:
        sys.exit(f"expected one input, found {len(graph.input)}")
    old_in = graph.input[0].name
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if dims != [1, 3, INPUT_SIZE, INPUT_SIZE]:
        sys.exit(f"unexpected input shape {dims}")

    # The converted graph leaves output shapes symbolic: learn them by running it.
    probe = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    shapes = {name: v.shape for name, v in run(src, old_in, probe).items()}
    scores, boxes = {}, {}
    for name, shape in shapes.items():
        if len(shape) != 3 or shape[0] != 1:
            sys.exit(f"unexpected output {name} {shape}")
        if shape[2] == NUM_CLASSES:
            scores[shape[1]] = name
        elif shape[2] == BOX_COLS:
            boxes[shape[1]] = name
        else:
            sys.exit(f"unexpected output {name} {shape}")
    rows = [(INPUT_SIZE // s) ** 2 for s in STRIDES]
    if sorted(scores) != sorted(rows) or sorted(boxes) != sorted(rows):
        sys.exit(f"outputs do not match strides {STRIDES}: {shapes}")

    level_outs = []
    for stride, n in zip(STRIDES, rows):
        out = f"head_s{stride}"
        graph.node.append(helper.make_node(
            "Concat", [scores[n], boxes[n]], [out], name=f"merge_s{stride}", axis=2))
        level_outs.append(out)
    graph.node.append(helper.make_node("Concat", level_outs, ["output"], name="merge_levels", axis=1))

    del graph.output[:]
    total = sum(rows)
    graph.output.append(helper.make_tensor_value_info(
        "output", TensorProto.FLOAT, [1, total, NUM_CLASSES + BOX_COLS]))
    fold_constants(graph)
    canonicalize(graph, old_in, "output")

    onnx.checker.check_model(model)
    onnx.save(model, dst)

    # Numerical check against the six-output model.
    x = np.random.default_rng(416).standard_normal((1, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    ref = run(src, old_in, x)
    merged = run(dst, "input", x)["output"]
    if merged.shape != (1, total, NUM_CLASSES + BOX_COLS):
        sys.exit(f"merged output has shape {merged.shape}")
    expect = np.concatenate(
        [np.concatenate([ref[scores[n]], ref[boxes[n]]], axis=2) for n in rows], axis=1)
    diff = float(np.max(np.abs(expect - merged)))
    if diff > 1e-5:
        sys.exit(f"merged output differs from the six outputs: max abs diff {diff}")
    order = ", ".join(f"s{s}: {scores[n]} + {boxes[n]}" for s, n in zip(STRIDES, rows))
    print(f"merged {order} -> output {list(merged.shape)}; max abs diff {diff:g}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
