"""Writes of a TorchScript graph made exact before coremltools' tensor-assignment pass fuses them (installed by
``_ct_private.install_frontend_patches``): in-place ops on views written back, writes through shared view chains
given chains of their own, stale views re-taken after a write, and what is left that coremltools would lose
found (``stale_view_write``). Nodes are coremltools' ``InternalTorchIRNode`` (its attributes are listed in
``_ct_private.PRIVATE_NAMES``)."""
from __future__ import annotations

from ._ct_private import new_ts_node, node_attr


def view_chains(graph) -> dict:
    """For each ``copy_`` / ``fill_`` of a TorchScript graph (by position), the (kind, dim input) of every
    select / slice in the view chain it writes through, tracked the way coremltools' fusion pass tracks them."""
    seqs, chains = {}, {}
    for i, node in enumerate(graph.nodes):
        if node.kind in ("empty", "select", "slice"):
            seq = seqs.pop(node.inputs[0], [])
            seqs[node.outputs[0]] = seq + [node]
        elif node.kind == "to" and node.inputs and node.inputs[0] in seqs:
            seqs[node.outputs[0]] = seqs.pop(node.inputs[0])
        elif node.kind in ("copy_", "fill_") and node.inputs and node.inputs[0] in seqs:
            chains[i] = [(n.kind, n.inputs[1]) for n in seqs[node.inputs[0]] if n.kind in ("select", "slice")]
    return chains


_VIEW_KINDS = {"select", "slice", "view", "reshape", "permute", "transpose", "t", "unsqueeze", "squeeze", "expand",
               "expand_as", "narrow", "as_strided", "unfold", "diagonal", "view_as", "alias", "detach", "flatten",
               "unflatten", "split", "chunk", "unbind", "movedim", "real", "imag", "view_as_real", "view_as_complex"}
_HARMLESS_KINDS = {"append", "detach_", "requires_grad_"}   # handled by coremltools, or no value change


def stale_view_write(graph):
    """The writes coremltools' TorchScript frontend gets wrong without a word, found before it converts. Later
    uses of a tensor written in place take the op's output in TorchScript, and coremltools renames the tensor
    after a fused slice write (``copy_`` / ``fill_``); nothing updates the rest: a view taken before a write into
    its tensor and read after it keeps the old values, and after any other in-place op on a view (``y[t, idx] =
    v`` is ``index_put_`` on ``y[t]``; ``y[0].mul_(2)``) the tensor itself keeps them.
    Returns None, or (node, what) for the first such write whose stale value is read."""
    last_read = {name: len(graph.nodes) for name in graph.outputs}   # the outputs are read after every node
    for j, node in enumerate(graph.nodes):
        for name in node.inputs:
            if isinstance(name, str):
                last_read[name] = max(last_read.get(name, -1), j)
    base, views, made = {}, {}, {}   # view -> the tensor it views; tensor -> its views so far; view -> node
    consts = {o: repr(node_attr(n).get("value")) for n in graph.nodes if n.kind.split("::")[-1] == "constant"
              for o in n.outputs}
    for i, node in enumerate(graph.nodes):
        kind = node.kind.split("::")[-1]
        if kind in _VIEW_KINDS and node.inputs:
            for out in node.outputs:
                base[out] = base.get(node.inputs[0], node.inputs[0])
                views.setdefault(base[out], []).append(out)
                made[out] = node
        if not node.inputs or not kind.endswith("_") or kind.startswith("__") or kind in _HARMLESS_KINDS:
            continue
        written = node.inputs[0]
        root = base.get(written, written)
        if written != root and kind not in ("copy_", "fill_") and last_read.get(root, -1) > i \
                and not _written_back(graph, i, node, written, root, made, consts):
            return node, f"'{kind}' writes into a view of '{root}', which is read after it unchanged"
        for name in views.get(root, ()):
            if name != written and last_read.get(name, -1) > i and not _disjoint(name, written, made, consts):
                return node, (f"'{name}', a view of '{root}', is read after the write '{kind}' into that tensor "
                              "with the values from before it")
    return None


def write_back_view_writes(graph) -> int:
    """Make coremltools' out-of-place reading of an in-place op exact, before its tensor-assignment pass: an
    in-place op on a select / slice view of a tensor that is read after it (openunmix's ``atan2`` does
    ``x += ...`` on ``x = mix_stft[..., 0]``): coremltools converts the op out of place and the tensor keeps its
    old values. After it a ``copy_`` of its result into the same view of the tensor is added, the form Python's
    ``y[idx] += v`` traces to, which coremltools' tensor-assignment pass converts as a slice write (renaming the
    tensor's later uses to the written one).

    A view taken before such a write and read after it still holds the old values in coremltools' reading
    (openunmix's ``_mul_add`` writes ``out[..., 0]`` and returns ``out``, a view of ``Cj``): ``stale_view_write``
    refuses those, unless the two views share no element (``_disjoint``). Returns the count of added copies."""
    consts = {o: repr(node_attr(n).get("value")) for n in graph.nodes if n.kind.split("::")[-1] == "constant"
              for o in n.outputs}
    false = next((o for n in graph.nodes if n.kind.split("::")[-1] == "constant" for o in n.outputs
                  if node_attr(n).get("value") is False), None)
    base, made, added, i = {}, {}, 0, 0

    def read_after(name, pos) -> bool:
        return name in graph.outputs or any(name in n.inputs for n in graph.nodes[pos + 1:])

    while i < len(graph.nodes):
        node = graph.nodes[i]
        kind = node.kind.split("::")[-1]
        if kind in _VIEW_KINDS and node.inputs and len(node.outputs) == 1:
            for out in node.outputs:
                base[out] = base.get(node.inputs[0], node.inputs[0])
                made[out] = node
        is_write = kind.endswith("_") and not kind.startswith("__") and kind not in _HARMLESS_KINDS
        written = node.inputs[0] if node.inputs else None
        root = base.get(written, written)
        if not is_write or written is None:
            i += 1
            continue
        pos = i
        if kind not in ("copy_", "fill_") and written != root and false is not None and read_after(root, i) \
                and not _written_back(graph, i, node, written, root, made, consts):
            r, chain = _chain_nodes(written, made)
            if r == root and chain and all(n.kind.split("::")[-1] in ("select", "slice") for n in chain):
                new, view = _clone_chain(chain, root, f"{node.outputs[0]}_sr_view{added}")
                out = f"{node.outputs[0]}_sr_back{added}"
                new.append(new_ts_node(kind="copy_", inputs=[view, node.outputs[0], false], outputs=[out],
                                               name=out, parent=node.parent))
                graph.nodes[i + 1:i + 1] = new
                added += 1
                pos = i + len(new)
        i = pos + 1
    return added


def _clone_chain(chain, root, tag):
    """New view nodes repeating ``chain`` (view nodes, first to last) from ``root``: (nodes, last output)."""
    src, new = root, []
    for k, v in enumerate(chain):
        out = f"{tag}_{k}"
        new.append(new_ts_node(kind=v.kind, inputs=[src] + list(v.inputs[1:]), outputs=[out],
                                       name=out, parent=v.parent, attr=dict(v.attr or {})))
        src = out
    return new, src


def refresh_stale_views(graph) -> int:
    """Re-take, after a ``copy_`` / ``fill_`` into a tensor, every view of it taken before the write and read
    after it (openunmix's ``_mul_add`` writes ``out[..., 0]`` and returns ``out = Cj[:, :, i, j, :]``, which the
    caller copies back into ``Cj``): coremltools renames the tensor's later uses to its written value but leaves
    its views as they were. The view's chain of select / slice / ... ops is repeated from the tensor right after
    the write, and later reads take the new view. Returns how many views were re-taken."""
    consts = {o: repr(node_attr(n).get("value")) for n in graph.nodes if n.kind.split("::")[-1] == "constant"
              for o in n.outputs}
    base, views, made, done, i = {}, {}, {}, 0, 0
    while i < len(graph.nodes):
        node = graph.nodes[i]
        kind = node.kind.split("::")[-1]
        if kind in _VIEW_KINDS and node.inputs and len(node.outputs) == 1:
            out = node.outputs[0]
            base[out] = base.get(node.inputs[0], node.inputs[0])
            views.setdefault(base[out], []).append(out)
            made[out] = node
        if kind not in ("copy_", "fill_") or not node.inputs:
            i += 1
            continue
        written = node.inputs[0]
        root = base.get(written, written)
        r, chain = _chain_nodes(written, made)
        if chain and all(n.kind.split("::")[-1] in ("select", "slice") for n in chain) \
                and _shared(graph, chain, node):
            # coremltools follows a view chain to its tensor only through views nobody else has used (its
            # pass hands each view's chain to one consumer): the write gets a chain of its own
            own, written = _clone_chain(chain, r, f"{node.outputs[0]}_sr_own")
            for n in own:
                base[n.outputs[0]] = root
                views.setdefault(root, []).append(n.outputs[0])
                made[n.outputs[0]] = n
            graph.nodes[i:i] = own
            i += len(own)
            node.inputs = [written] + list(node.inputs[1:])
        later = graph.nodes[i + 1:]
        stale = [v for v in views.get(root, ()) if v != written and not _disjoint(v, written, made, consts)
                 and (v in graph.outputs or any(v in n.inputs for n in later))]
        new_nodes = []
        for v in stale:
            r, chain = _chain_nodes(v, made)
            if r != root or not chain or any(len(n.outputs) != 1 for n in chain):
                continue
            new, fresh = _clone_chain(chain, root, f"{v}_sr_fresh{done}")
            done += 1
            for n in later:
                n.inputs = [fresh if x == v else x for x in n.inputs]
            graph.outputs = [fresh if x == v else x for x in graph.outputs]
            for n in new:
                base[n.outputs[0]] = root
                views[root].append(n.outputs[0])
                made[n.outputs[0]] = n
            new_nodes.extend(new)
        graph.nodes[i + 1:i + 1] = new_nodes
        i += 1 + len(new_nodes)
    return done


def _shared(graph, chain, write) -> bool:
    """Whether a view of ``chain`` (first to last, then ``write``) is also used by any other node."""
    users = {n.outputs[0]: (chain[k + 1] if k + 1 < len(chain) else write) for k, n in enumerate(chain)}
    for n in graph.nodes:
        for x in n.inputs:
            if x in users and n is not users[x]:
                return True
    return any(x in users for x in graph.outputs)


def _chain_nodes(name, made):
    """(root, the view nodes from the root to ``name``, first to last)."""
    nodes = []
    while name in made:
        nodes.append(made[name])
        name = made[name].inputs[0]
    return name, nodes[::-1]


def _disjoint(a, b, made, consts) -> bool:
    """Two views of one tensor that share no element: past their common view ops, the first ops differ only in a
    ``select`` on the same axis at different constant indices (``z[..., 1]`` and ``z[..., 0]``, also below a shared
    view such as openunmix's ``out[..., 0]`` / ``out[..., 1]`` of ``out = Cj[:, :, i, j, :]``), so a write into
    one leaves the other as it was."""
    (ra, ca), (rb, cb) = _chain_nodes(a, made), _chain_nodes(b, made)
    if ra != rb:
        return False
    k = 0
    while k < min(len(ca), len(cb)) and ca[k] is cb[k]:
        k += 1
    if k >= len(ca) or k >= len(cb):
        return False
    na, nb = ca[k], cb[k]
    if na.kind.split("::")[-1] != "select" or nb.kind.split("::")[-1] != "select" \
            or len(na.inputs) < 3 or len(nb.inputs) < 3:
        return False
    dims = [consts.get(n.inputs[1]) for n in (na, nb)]
    idx = [consts.get(n.inputs[2]) for n in (na, nb)]
    return None not in dims and None not in idx and dims[0] == dims[1] and idx[0] != idx[1] \
        and all(v.isdigit() for v in idx)


def _view_chain(name, made, consts) -> tuple:
    """The view ops from a tensor's root to ``name``, with their constant arguments' values."""
    chain = []
    while name in made:
        node = made[name]
        chain.append((node.kind, tuple(consts.get(a, a) for a in node.inputs[1:])))
        name = node.inputs[0]
    return name, tuple(reversed(chain))


def _written_back(graph, i, node, written, root, made, consts) -> bool:
    """``y[idx] /= c`` traces as an in-place op on a view, then a ``copy_`` of its result into the same view of
    ``y`` (Python's augmented assignment on a subscript): coremltools converts the copy_ as a slice write, so the
    tensor does get the new values. True when such a copy_ follows with nothing reading ``y`` in between."""
    key, made = _view_chain(written, made, consts), dict(made)
    for later in graph.nodes[i + 1:]:
        kind = later.kind.split("::")[-1]
        if kind == "copy_" and len(later.inputs) > 1 and later.inputs[1] in node.outputs:
            return _view_chain(later.inputs[0], made, consts) == key
        if kind in _VIEW_KINDS and later.inputs:
            made.update({o: later for o in later.outputs})
        elif root in later.inputs:   # a read of the stale tensor before the write-back
            return False
    return False
