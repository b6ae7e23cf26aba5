"""``perfmodel analyze``: a user's JAX function lowered to XLA and turned into ledger ops.

The function is jitted and lowered with abstract arguments (nothing is allocated or run unless
``--measure``); the program read is the **unoptimised HLO lowered for the current platform**
(``jax.jit(f).lower(...).as_text(dialect="hlo", debug_info=True)``), the program XLA's
``Lowered.cost_analysis()`` counts. The compiled HLO is not used for counting: it is specific
to the backend that compiles it (the CPU backend wraps bf16 arithmetic in converts it counts as
FLOPs, fuses and constant-folds its own way), while the lowered program is what every target's
compiler starts from.

Instructions become ops (calls are inlined; a counted loop, jax's scan or fori_loop, has its
body's rows priced once per trip as their ``repeat``, where XLA's cost analysis counts the
body once (relation ``loop-trip-count``); another ``while`` body or a conditional's branches
are counted once, and their rows say so):
- ``dot`` -> matmul: batch = the batch dims, m and n = the free dims of each side, k = the
  contracted dims; dtype the left operand's, ``weight_dtype`` the right's where it differs;
  JAX's operand precision (high, highest) as the op's ``precision``. ``convolution`` -> the
  equivalent matmul: m = output positions, n = output features, k = window x input features
  per group, batch = feature groups (XLA counts only window positions inside the input:
  relation ``convolution-padding``).
- everything else that computes is grouped into fused kernels, as XLA fuses elementwise and
  reduction chains: the connected instructions of one named scope (transposes, reshapes and
  broadcasts are layout: they join a kernel without moving memory) form one elementwise op.
  Its bytes are XLA's fused operands and results: every operand from outside the kernel read
  once (a gather, slice or dynamic-slice reads what it takes; a scatter and a
  dynamic-update-slice read and write their updates in place) plus every result used outside
  it. A kernel with max- and sum-reductions and an exponential is a softmax
  (``calibrate_as: softmax``).
- collectives (all-gather, all-reduce, reduce-scatter, all-to-all, collective-permute) ->
  collective ops over the mesh axes their replica groups span (shard_map bodies are
  per-device programs; their shapes are per device).
- a program sharded by jit in/out shardings or sharding constraints (GSPMD) is lowered as the
  whole job's program (global shapes; the SPMD partitioner adds its collectives only when
  compiling). It is read instead right after XLA's SPMD partitioner, from XLA's dump of that
  pass (``xla_dump_hlo_pass_re=spmd-partitioning``): one device's instructions and the
  partitioner's collectives, still unfused (``xla.partitioned``). Where it cannot be compiled
  here the whole job's program is read, and the output says so (``xla.gspmd``).
- custom calls: the SPMD partitioner's sharding annotations cost nothing and are skipped;
  any other target is the op the ``--annotations`` file maps it to, or a row marked
  ``unpriced``, never dropped.

FLOPs follow XLA's ``HloCostAnalysis`` conventions, so the rows sum to XLA's count of the
lowered program: a dot 2 x output elements x contracted size; an elementwise op, compare,
select or convert 1 per output element; ``exp``, ``log``, ``tanh``, ``sqrt``, ``rsqrt``,
``power``, ``logistic`` and the trigonometric functions count as transcendentals, not FLOPs
(kept in the row's ``transcendentals``); a reduction of C elements C - 1 applications of its
reducer; a scatter one application per update element; an all-reduce one per output element;
data movement 0. The ledger prices a collective's reduction by its own convention (relation
``collective-reduction``); perfmodel.analysis names each relation. Names: the innermost named_scope / jitted function path of the
instruction's ``op_name`` (``jvp(...)`` dropped, ``transpose(...)`` -> ``.bwd``, einsum specs
kept); names repeated by the program get suffixes ``.2``, ``.3``. Every op is ``in_step`` (one
compiled executable: no per-call dispatch overhead in t_calibrated).

jax is imported only inside functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import SpecError
from ..specs import DTYPE_BYTES

# HLO element types: bytes, and the ledger dtype (None: none; priced as fp32, noted)
HLO_TYPES = {
    "f32": (4, "fp32"), "bf16": (2, "bf16"), "f16": (2, "fp16"), "f64": (8, None),
    "f8e4m3fn": (1, "fp8"), "f8e5m2": (1, "fp8"), "s8": (1, "int8"), "s16": (2, "int16"),
    "s32": (4, "int32"), "s64": (8, "int64"), "u8": (1, "uint8"), "u16": (2, "uint16"),
    "u32": (4, "uint32"), "u64": (8, "uint64"), "pred": (1, "bool"), "c64": (8, None),
    "c128": (16, None), "s4": (0.5, None), "u4": (0.5, None), "token": (0, None),
}
FLOAT_TYPES = ("f32", "bf16", "f16", "f64", "f8e4m3fn", "f8e5m2")

# layout and bookkeeping: no kernel of their own, traced through to their sources
LAYOUT = {"broadcast", "reshape", "bitcast", "transpose", "copy", "tuple", "get-tuple-element",
          "optimization-barrier", "add-dependency"}
LEAVES = {"parameter", "constant", "iota", "after-all", "partition-id", "replica-id"}
TRANSCENDENTAL = {"exponential", "exponential-minus-one", "log", "log-plus-one", "logistic",
                  "power", "sqrt", "cbrt", "rsqrt", "tanh", "sine", "cosine", "tan", "atan2",
                  "erf"}
NO_FLOPS = {"slice", "dynamic-slice", "dynamic-update-slice", "concatenate", "pad", "gather",
            "reverse", "bitcast-convert", "rng-bit-generator", "sort"}
COLLECTIVE_OPS = {"all-gather": "all_gather", "all-reduce": "all_reduce",
                  "reduce-scatter": "reduce_scatter", "all-to-all": "all_to_all",
                  "collective-permute": "ppermute"}
# sharding annotations of jit/shard_map programs: no computation
SHARDING_TARGETS = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape",
                    "xla.sdy.GlobalToLocalShape", "xla.sdy.LocalToGlobalShape",
                    "xla.sdy.FuncResultSharding", "xla.sdy.ShardingConstraint",
                    "xla.sdy.ManualComputation", "LayoutConstraint"}
TRANSFORMS = {"jvp", "transpose", "vmap", "jit", "pjit", "remat", "checkpoint", "remat2",
              "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "shard_map",
              "pmap", "xmap", "cond", "while", "scan", "body", "checkify"}


# ---- HLO text -----------------------------------------------------------------------------

@dataclass
class Instr:
    name: str
    shapes: list            # [(hlo type, dims)], one per array in the result
    opcode: str
    operands: list
    attrs: str
    op_name: str = ""
    root: bool = False
    index: int = 0          # a parameter's number
    literal: str = ""       # a constant's value

    @property
    def nbytes(self) -> float:
        return sum(_bytes(t, d) for t, d in self.shapes)

    @property
    def elements(self) -> int:
        return math.prod(self.shapes[0][1]) if self.shapes else 0

    @property
    def dtype(self) -> str:
        return self.shapes[0][0] if self.shapes else "token"

    def attr(self, key: str) -> str | None:
        m = re.search(rf"(?:^|[ ,]){re.escape(key)}=", self.attrs)
        if not m:
            return None
        s, i = self.attrs, m.end()
        if i < len(s) and s[i] in "{\"":
            close = "}" if s[i] == "{" else "\""
            depth, j = 0, i
            while j < len(s):
                if s[j] == "{" and close == "}":
                    depth += 1
                elif s[j] == close:
                    if close == "\"" and j > i:
                        return s[i + 1:j]
                    depth -= 1
                    if depth == 0:
                        return s[i:j + 1]
                j += 1
            return s[i:]
        return re.match(r"[^,\s]*", s[i:]).group(0)

    def dims(self, key: str) -> list[int]:
        v = self.attr(key)
        return [int(x) for x in re.findall(r"\d+", v)] if v else []


def abstract_arrays(specs) -> list:
    """jax.ShapeDtypeStructs for (shape, dtype) pairs (the CLI's --args)."""
    import jax

    return [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in specs]


def _bytes(t: str, dims) -> float:
    return HLO_TYPES.get(t, (4, None))[0] * math.prod(dims)


def _match(s: str, i: int, open_: str = "(", close: str = ")") -> int:
    """Index of the bracket closing the one at s[i]."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_:
            depth += 1
        elif s[j] == close:
            depth -= 1
            if depth == 0:
                return j
    return len(s) - 1


def _shapes(text: str) -> list:
    return [(t, tuple(int(x) for x in d.split(",") if x.strip()))
            for t, d in re.findall(r"(\w+)\[([^\]]*)\]", re.sub(r"\{[^{}]*\}", "", text))]


def parse_hlo(text: str) -> tuple[dict, str]:
    """Computations (name -> [Instr]) of an HLO module's text and the entry's name."""
    comps: dict[str, list] = {}
    entry, cur = None, None
    for line in text.splitlines():
        head = re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s*(\([^)]*\)\s*->\s*.*)?\{\s*$", line)
        if head and not line.startswith(" "):
            cur = comps.setdefault(head.group(2), [])
            if head.group(1):
                entry = head.group(2)
            continue
        if line.startswith("}"):
            cur = None
            continue
        m = re.match(r"^\s+(ROOT\s+)?%?([^\s=]+)\s*=\s*(.*)$", line)
        if cur is None or not m:
            continue
        rest = m.group(3)
        if rest.startswith("("):
            j = _match(rest, 0)
            type_text, rest = rest[:j + 1], rest[j + 1:].lstrip()
        else:
            type_text, _, rest = rest.partition(" ")
        om = re.match(r"([\w\-]+)\(", rest)
        if not om:
            continue
        j = _match(rest, om.end() - 1)
        args, attrs = rest[om.end():j], rest[j + 1:].lstrip(", ")
        opcode = om.group(1)
        operands = [] if opcode in ("constant", "parameter", "iota") else [
            a.split()[-1].lstrip("%") for a in _split_top(args) if a.strip()]
        meta = re.search(r'op_name="((?:[^"\\]|\\.)*)"', attrs)
        cur.append(Instr(m.group(2), _shapes(type_text), opcode, operands, attrs,
                         meta.group(1).replace("\\'", "'") if meta else "",
                         bool(m.group(1)), int(args) if opcode == "parameter" else 0,
                         args if opcode == "constant" else ""))
    if entry is None:
        raise SpecError("the lowered program has no ENTRY computation; perfmodel analyze "
                        "cannot read this HLO")
    return comps, entry


def _split_top(s: str, sep: str = ",", opens: str = "({[", closes: str = ")}]") -> list[str]:
    """``s`` split at ``sep`` outside any brackets (HLO operand lists, op_name paths)."""
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += (ch in opens) - (ch in closes)
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


# ---- names --------------------------------------------------------------------------------

def _split_path(s: str) -> list[str]:
    return _split_top(s, "/", "(", ")")


def scope_of(op_name: str) -> tuple[str, bool]:
    """(scope path, backward?) of an instruction's op_name: 'jit(f)/transpose(jvp(mlp/up))/
    dot_general' -> ('mlp/up', True)."""
    op_name = op_name.split(";")[0]
    parts = _split_path(op_name)
    if len(parts) <= 1:
        return "", False
    parts = parts[:-1]  # the primitive
    if re.fullmatch(r"p?jit\(.*\)", parts[0]):
        parts = parts[1:]  # the function itself
    out, bwd = [], False
    stack = list(reversed(parts))
    while stack:
        p = stack.pop()
        m = re.fullmatch(r"(\w+)\((.*)\)", p)
        if m and m.group(1) in TRANSFORMS:
            bwd |= m.group(1) == "transpose"
            stack.extend(reversed(_split_path(m.group(2))))
            continue
        if p:
            out.append(p)
    return "/".join(out), bwd


# ---- the flattened program ----------------------------------------------------------------

@dataclass
class Node:
    id: int
    ins: Instr
    operands: list          # node ids
    scope: str
    bwd: bool
    where: str = ""         # "loop body" / "conditional branch" when not straight-line
    trip: int = 1           # times a loop body runs (known trip counts multiplied)
    manual: bool = False    # inside a shard_map body (per-device shapes)
    users: list = field(default_factory=list)


class Program:
    """The entry computation with calls inlined: nodes in program order."""

    def __init__(self, comps: dict, entry: str):
        self.comps, self.nodes = comps, []
        self._manual = False
        root = self._expand(entry, None, "", ("", False))
        self.root = root
        # jit in/out shardings or sharding constraints outside shard_map bodies: the SPMD
        # partitioner (at compile time) splits those instructions and adds the collectives
        self.gspmd = any(
            re.search(r"sharding=\{devices=", n.ins.attrs) for n in self.nodes
            if n.ins.opcode in ("parameter", "custom-call")) and any(
            not n.manual for n in self.nodes if n.ins.opcode not in LEAVES | LAYOUT
            and not (n.ins.opcode == "custom-call" and _target(n.ins) in SHARDING_TARGETS))
        for n in self.nodes:
            for o in n.operands:
                self.nodes[o].users.append(n.id)

    def _node(self, ins, operands, where, outer=("", False), trip=1) -> int:
        scope, bwd = scope_of(ins.op_name)
        if not scope:  # an instruction of a called function: the call's scope
            scope, bwd = outer[0], bwd or outer[1]
        n = Node(len(self.nodes), ins, operands, scope, bwd, where, trip, self._manual)
        self.nodes.append(n)
        return n.id

    def _trip(self, ins: Instr, ops: list) -> int | None:
        """A while loop's trip count when it is a counted loop (jax's scan and fori_loop):
        the condition is ``counter < N`` with N a constant and the counter starting at a
        constant; else None."""
        cond = self.comps.get((ins.attr("condition") or "").lstrip("%"), [])
        by = {i.name: i for i in cond}
        root = next((i for i in cond if i.root), None)
        if root is None or root.opcode != "compare" or "direction=LT" not in root.attrs \
                or len(root.operands) != 2:
            return None
        a, b = (by.get(o) for o in root.operands)
        if a is None or b is None or a.opcode != "get-tuple-element" or b.opcode != "constant":
            return None
        init = self.nodes[ops[0]] if ops and ops[0] < len(self.nodes) else None
        k = int(a.attr("index") or 0)
        if init is None or init.ins.opcode != "tuple" or k >= len(init.operands):
            return None
        start = self.nodes[init.operands[k]].ins
        try:
            n0, n1 = int(start.literal), int(b.literal)
        except ValueError:
            return None
        return n1 - n0 if start.opcode == "constant" and n1 > n0 else None

    def _expand(self, comp: str, args, where: str, outer: tuple, trip: int = 1) -> int:
        if comp not in self.comps:
            raise SpecError(f"the lowered program calls computation {comp!r}, which its text "
                            f"does not define; perfmodel analyze cannot read this HLO")
        local, root = {}, None
        for ins in self.comps[comp]:
            ops = [local[o] for o in ins.operands if o in local]
            here = scope_of(ins.op_name)
            inner = here if here[0] else outer
            if ins.opcode == "parameter" and args is not None and ins.index < len(args):
                i = args[ins.index]
            elif ins.opcode == "call":
                callee = (ins.attr("to_apply") or ins.attr("calls")).lstrip("%")
                was = self._manual
                self._manual |= callee.startswith("xla.sdy.manual_computation_body")
                i = self._expand(callee, ops, where, inner, trip)
                self._manual = was
            elif ins.opcode == "while":
                n = self._trip(ins, ops)
                self._expand(ins.attr("condition").lstrip("%"), ops,
                             "counted loop" if n else "loop body", inner, trip * (n or 1))
                i = self._expand(ins.attr("body").lstrip("%"), ops,
                                 "counted loop" if n else "loop body", inner, trip * (n or 1))
            elif ins.opcode == "conditional":
                branches = re.findall(r"%?([\w.\-]+)", ins.attr("branch_computations") or "")
                if not branches:
                    branches = [ins.attr("true_computation"), ins.attr("false_computation")]
                outs = [self._expand(b.lstrip("%"), ops[1 + k:2 + k] or ops[1:],
                                     "conditional branch", inner, trip)
                        for k, b in enumerate(branches) if b]
                i = outs[0]
            elif ins.opcode == "get-tuple-element" and ops:
                n = self.nodes[ops[0]]
                idx = int(ins.attr("index") or 0)
                if n is not None and n.ins.opcode == "tuple" and idx < len(n.operands):
                    i = n.operands[idx]
                else:
                    i = self._node(ins, ops, where, outer, trip)
            else:
                i = self._node(ins, ops, where, outer, trip)
            local[ins.name] = i
            if ins.root:
                root = i
        return root if root is not None else i


# ---- XLA's FLOP conventions ---------------------------------------------------------------

def _computation_flops(comps: dict, name: str | None) -> tuple[float, float]:
    """(flops, transcendentals) of one application of a reducer / scatter computation."""
    if not name or name.lstrip("%") not in comps:
        return 1.0, 0.0
    f = t = 0.0
    for ins in comps[name.lstrip("%")]:
        if ins.opcode in LEAVES or ins.opcode in LAYOUT:
            continue
        if ins.opcode in TRANSCENDENTAL:
            t += max(ins.elements, 1)
        elif ins.opcode not in NO_FLOPS:
            f += max(ins.elements, 1)
    return f, t


def cost(node: Node, prog: Program) -> tuple[float, float]:
    """(flops, transcendentals) of one instruction, as XLA's HloCostAnalysis counts them."""
    ins, op = node.ins, node.ins.opcode
    if op in LEAVES or op in LAYOUT or op in NO_FLOPS or op == "custom-call":
        return 0.0, 0.0
    if op == "dot":
        lhs = prog.nodes[node.operands[0]].ins
        k = math.prod(lhs.shapes[0][1][d] for d in ins.dims("lhs_contracting_dims"))
        return 2.0 * ins.elements * k, 0.0
    if op == "convolution":
        return 2.0 * conv_valid_macs(node, prog), 0.0
    if op == "reduce":
        src = prog.nodes[node.operands[0]].ins
        f, t = _computation_flops(prog.comps, ins.attr("to_apply"))
        count = src.elements - ins.elements
        return f * count, t * count
    if op in ("scatter",):
        upd = prog.nodes[node.operands[-1]].ins
        f, t = _computation_flops(prog.comps, ins.attr("to_apply"))
        return f * upd.elements, t * upd.elements
    if op == "reduce-window":
        window = math.prod(int(x) for x in re.findall(r"size=([\dx]+)", ins.attrs)[0].split("x")) \
            if "size=" in ins.attrs else 1
        f, t = _computation_flops(prog.comps, ins.attr("to_apply"))
        return f * ins.elements * (window - 1), t * ins.elements * (window - 1)
    if op in ("all-reduce", "reduce-scatter"):
        return float(sum(math.prod(d) for _, d in ins.shapes)), 0.0
    if op in COLLECTIVE_OPS:
        return 0.0, 0.0
    if op == "map":
        f, t = _computation_flops(prog.comps, ins.attr("to_apply"))
        return f * ins.elements, t * ins.elements
    if op in TRANSCENDENTAL:
        return 0.0, float(ins.elements)
    return float(ins.elements), 0.0


def dot_dims(node: Node, prog: Program) -> tuple[int, int, int, int]:
    """(batch, m, k, n) of a dot from its operands' shapes and dimension numbers."""
    ins = node.ins
    lhs = prog.nodes[node.operands[0]].ins.shapes[0][1]
    rhs = prog.nodes[node.operands[1]].ins.shapes[0][1]
    lb, lc = ins.dims("lhs_batch_dims"), ins.dims("lhs_contracting_dims")
    rb, rc = ins.dims("rhs_batch_dims"), ins.dims("rhs_contracting_dims")
    b = math.prod(lhs[d] for d in lb)
    k = math.prod(lhs[d] for d in lc)
    m = math.prod(s for d, s in enumerate(lhs) if d not in lb and d not in lc)
    n = math.prod(s for d, s in enumerate(rhs) if d not in rb and d not in rc)
    return b, m, k, n


def conv_dims(node: Node, prog: Program) -> tuple[int, int, int, int]:
    """(m, k, n, groups) of a convolution as a matmul: m output positions (batch x spatial),
    n output features, k window x input features per group (padding counted as computed)."""
    ins = node.ins
    out = ins.shapes[0][1]
    kern = prog.nodes[node.operands[1]].ins.shapes[0][1]
    labels = ins.attr("dim_labels") or ""
    groups = int(ins.attr("feature_group_count") or 1)
    try:
        _, klab, olab = re.split(r"_|->", labels)
        o_feat = out[olab.index("f")]
        k_out = kern[klab.index("o")]
        k_in = kern[klab.index("i")]
        window = math.prod(s for d, s in enumerate(kern) if klab[d] not in "io")
    except (ValueError, IndexError):
        raise SpecError(f"convolution {ins.name!r} has dimension labels {labels!r} that "
                        f"perfmodel analyze cannot read") from None
    m = math.prod(out) // o_feat
    return m, window * k_in, k_out // groups, groups


def conv_valid_macs(node: Node, prog: Program) -> float:
    """Multiply-adds of a convolution that touch the input (XLA counts no padding): per
    spatial dim, the (output, window) pairs landing inside the input."""
    ins = node.ins
    lhs = prog.nodes[node.operands[0]].ins.shapes[0][1]
    out = ins.shapes[0][1]
    m, k, n, groups = conv_dims(node, prog)
    labels = ins.attr("dim_labels") or ""
    ilab, klab, olab = re.split(r"_|->", labels)
    win = ins.attr("window") or "{}"

    def window(key):
        mm = re.search(key + r"[=]([\d_x-]+)", win)
        return mm.group(1).split("x") if mm else None

    digits = sorted(c for c in olab if c.isdigit())
    size = window("size") or ["1"] * len(digits)
    stride = window("stride") or ["1"] * len(digits)
    pad = window("pad") or ["0_0"] * len(digits)
    rdil = window("rhs_dilate") or ["1"] * len(digits)
    if any(x != "1" for x in window("lhs_dilate") or []):
        return float(m * k * n * groups)  # a transposed convolution: not derived, all counted
    pairs, full = 1.0, 1.0
    for d, c in enumerate(digits):
        I, O = lhs[ilab.index(c)], out[olab.index(c)]
        K, st, dl = int(size[d]), int(stride[d]), int(rdil[d])
        lo = int(pad[d].split("_")[0])
        pairs *= sum(1 for o in range(O) for kk in range(K) if 0 <= o * st - lo + kk * dl < I)
        full *= O * K
    return m * k * n * groups * pairs / full


# ---- kernels ------------------------------------------------------------------------------

@dataclass
class Row:
    """One ledger op (or an unpriced custom call) and what it was made from."""

    op: dict | None          # the workload op spec (None: unpriced)
    name: str
    hlo: str                 # the instructions' opcodes, for people
    op_names: set            # the op_name metadata of its instructions (for --measure)
    scope: str
    xla_flops: float
    transcendentals: float
    note: str = ""
    precision: str = ""
    first: int = 0           # program order


def _dtype(hlo_type: str) -> tuple[str, str]:
    """(ledger dtype, note) of an HLO element type."""
    led = HLO_TYPES.get(hlo_type, (4, None))[1]
    if led is None or led not in DTYPE_BYTES:
        return "fp32", f"{hlo_type} priced as fp32"
    return led, ""


class Builder:
    def __init__(self, prog: Program, mesh: dict | None, device_ids: list | None,
                 annotations: dict | None):
        self.p, self.mesh, self.ids, self.ann = prog, mesh, device_ids, annotations or {}
        self._src: dict[int, frozenset] = {}
        self._cons: dict[int, frozenset] = {}

    def free(self, i: int) -> bool:
        n = self.p.nodes[i]
        return n.ins.opcode in LAYOUT or (n.ins.opcode == "custom-call"
                                          and _target(n.ins) in SHARDING_TARGETS)

    def sources(self, i: int) -> frozenset:
        """What a kernel reading node i really reads: layout ops traced to their sources."""
        if i not in self._src:
            n = self.p.nodes[i]
            self._src[i] = (frozenset().union(*(self.sources(o) for o in n.operands))
                            if self.free(i) and n.operands else frozenset([i]))
        return self._src[i]

    def consumers(self, i: int) -> frozenset:
        if i not in self._cons:
            out = set()
            for u in self.p.nodes[i].users:
                out |= self.consumers(u) if self.free(u) else {u}
            self._cons[i] = frozenset(out)
        return self._cons[i]

    def leaf_bytes(self, i: int) -> float:
        ins = self.p.nodes[i].ins
        if ins.opcode == "iota" or (ins.opcode == "constant" and ins.elements <= 1):
            return 0.0  # generated in the kernel / an immediate
        return ins.nbytes

    def build(self) -> list[Row]:
        p = self.p
        outputs = self.sources(p.root)
        kinds = {}
        for n in p.nodes:
            op = n.ins.opcode
            if self.free(n.id) or op in LEAVES:
                continue
            if op in ("dot", "convolution"):
                kinds[n.id] = "matmul"
            elif op in COLLECTIVE_OPS:
                kinds[n.id] = "collective"
            elif op == "custom-call":
                kinds[n.id] = "custom"
            else:
                kinds[n.id] = "fused"
        # kernels: connected fused instructions of one scope (through layout ops)
        parent = {i: i for i, k in kinds.items() if k == "fused"}

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i in parent:
            n = p.nodes[i]
            for o in n.operands:
                for s in self.sources(o):
                    if s in parent and (p.nodes[s].scope, p.nodes[s].bwd, p.nodes[s].trip) == \
                            (n.scope, n.bwd, n.trip):
                        parent[find(s)] = find(i)
        groups: dict[int, list] = {}
        for i in parent:
            groups.setdefault(find(i), []).append(i)
        rows = []
        for i, k in kinds.items():
            n = p.nodes[i]
            if k == "matmul":
                rows.append(self.matmul(n))
            elif k == "collective":
                rows.append(self.collective(n))
            elif k == "custom":
                rows.append(self.custom(n))
        for members in groups.values():
            row = self.fused(sorted(members), outputs)
            if row is not None:
                rows.append(row)
        rows.sort(key=lambda r: r.first)
        return rows

    def _base(self, n: Node, fallback: str) -> str:
        name = n.scope or fallback
        return name + (".bwd" if n.bwd else "")

    def matmul(self, n: Node) -> Row:
        ins = n.ins
        lhs = self.p.nodes[n.operands[0]].ins
        dtype, note = _dtype(lhs.dtype)
        if ins.opcode == "dot":
            b, m, k, nn = dot_dims(n, self.p)
        else:
            m, k, nn, b = conv_dims(n, self.p)
            note = _join("convolution as its matmul: padding counted as computed (XLA does "
                         "not), bytes as the unrolled (im2col) operand", note)
        rhs = self.p.nodes[n.operands[1]].ins
        wdtype, wnote = _dtype(rhs.dtype)
        # JAX's precision of the product (the highest of its operands'), for an fp32 product
        given = {x.lower() for x in re.findall(r"\w+", ins.attr("operand_precision")
                                               or ins.attr("precision_config") or "")}
        prec = next((p for p in ("highest", "high") if p in given), "")
        f, t = cost(n, self.p)
        op = {"name": self._base(n, ins.opcode), "kind": "matmul", "dtype": dtype, "m": m,
              "k": k, "n": nn, "in_step": True}
        if prec:
            op["precision"] = prec
        if wdtype != dtype:  # the k x n operand stored narrower or wider (quantized weights)
            op["weight_dtype"] = wdtype
            note = _join(note, wnote)
        if b > 1:
            op["batch"] = b
        if n.trip > 1:
            op["repeat"] = n.trip
        return Row(op, op["name"], ins.opcode, {ins.op_name}, n.scope, f, t,
                   _join(note, _where_note(n.where, n.trip)), prec, n.id)

    def collective(self, n: Node) -> Row:
        ins = n.ins
        kind = COLLECTIVE_OPS[ins.opcode]
        src = self.p.nodes[n.operands[0]].ins
        axes, size = self.axes_of(ins)
        dtype, note = _dtype(ins.dtype)
        op = {"name": self._base(n, kind), "kind": "collective", "collective": kind,
              "axes": axes, "dtype": dtype, "in_step": True}
        if kind == "all_gather":
            shape = list(ins.shapes[0][1])
        elif kind == "all_to_all":
            shape = [size] + list(src.shapes[0][1])
        else:  # reduce_scatter, all_reduce: the unreduced input; ppermute: what is sent
            shape = list(src.shapes[0][1])
        op["shape"] = [max(1, s) for s in shape] or [1]
        if n.trip > 1:
            op["repeat"] = n.trip
        f, t = cost(n, self.p)
        return Row(op, op["name"], ins.opcode, {ins.op_name}, n.scope, f, t,
                   _join(note, _where_note(n.where, n.trip)), "", n.id)

    def axes_of(self, ins: Instr) -> tuple[list[str], int]:
        """The mesh axes a collective's replica groups (or permutation pairs) span."""
        groups = replica_groups(ins)
        if not self.mesh:
            raise SpecError(f"the program has a collective ({ins.opcode} {ins.name!r}, "
                            f"{ins.op_name or 'no op_name'}) but no mesh was given: pass the "
                            f"mesh axes, e.g. --mesh x=8 (mesh=... from Python), so its "
                            f"replica groups can be named as mesh axes")
        sizes = list(self.mesh.values())
        names = list(self.mesh)
        ids = self.ids or list(range(math.prod(sizes)))
        pos = {d: i for i, d in enumerate(ids)}

        def coords(d):
            if d not in pos:
                raise SpecError(f"collective {ins.name!r} names device {d}, outside the mesh "
                                f"{self.mesh}; give the mesh the program runs on (--mesh)")
            i, out = pos[d], []
            for s in reversed(sizes):
                out.append(i % s)
                i //= s
            return list(reversed(out))

        spanned = set()
        for g in groups:
            cs = [coords(d) for d in g]
            for a in range(len(sizes)):
                if len({c[a] for c in cs}) > 1:
                    spanned.add(a)
        if not spanned:
            spanned = set(range(len(sizes))) if not groups else set()
        axes = [names[a] for a in sorted(spanned)]
        if not axes:
            raise SpecError(f"collective {ins.name!r} ({ins.op_name}) spans no mesh axis "
                            f"(replica groups {ins.attr('replica_groups')}); check --mesh")
        return axes, math.prod(sizes[a] for a in spanned)

    def custom(self, n: Node) -> Row:
        ins = n.ins
        target = _target(ins)
        f, t = cost(n, self.p)
        name = self._base(n, target)
        if target in self.ann:
            op = {**self.ann[target], "name": name}
            op.setdefault("in_step", True)
            return Row(op, name, f"custom-call {target}", {ins.op_name}, n.scope, f, t,
                       "from --annotations", "", n.id)
        return Row(None, name, f"custom-call {target}", {ins.op_name}, n.scope, f, t,
                   f"unpriced: custom call {target!r} (map it to an op spec in --annotations)",
                   "", n.id)

    def fused(self, members: list[int], outputs: frozenset) -> Row | None:
        p = self.p
        mset = set(members)
        reads: dict[int, float] = {}
        out_bytes = 0.0
        flops = trans = 0.0
        biggest = max(members, key=lambda i: p.nodes[i].ins.elements)
        ops_seen, op_names = [], set()
        wheres = set()
        for i in members:
            n = p.nodes[i]
            f, t = cost(n, p)
            flops += f
            trans += t
            ops_seen.append(n.ins.opcode)
            op_names.add(n.ins.op_name)
            wheres.add(n.where)
            for k, o in enumerate(n.operands):
                for s in self.sources(o):
                    if s in mset:
                        continue
                    b = self._read(n, k, s)
                    reads[s] = max(reads.get(s, 0.0), b)
            used_outside = any(c not in mset for c in self.consumers(i)) or i in outputs
            if used_outside:
                out_bytes += self._written(n)
        if not any(op not in NO_FLOPS for op in ops_seen) and flops == 0 and not reads and not out_bytes:
            return None
        total = sum(reads.values()) + out_bytes
        big = p.nodes[biggest]
        # the kernel's dtype: its widest float output, else its largest output's
        floats = [p.nodes[i].ins for i in members if p.nodes[i].ins.dtype in FLOAT_TYPES]
        pick = max(floats, key=lambda x: x.nbytes) if floats else big.ins
        dtype, note = _dtype(pick.dtype)
        elements = max(1, big.ins.elements)
        n_out = sum(1 for i in members if any(c not in mset for c in self.consumers(i))
                    or i in outputs)
        op = {"name": self._base(big, _opnames(ops_seen)), "kind": "elementwise",
              "dtype": dtype, "shape": [max(1, s) for s in big.ins.shapes[0][1]] or [1],
              "inputs": len([s for s, b in reads.items() if b > 0]), "outputs": max(1, n_out),
              "flops_per_element": flops / elements, "in_step": True}
        if total > 0:
            op["bytes"] = total
        if op["inputs"] + op["outputs"] == 0:
            op["outputs"] = 1
        if _is_softmax(ops_seen, [p.nodes[i] for i in members], p):
            op["calibrate_as"] = "softmax"
        if big.trip > 1:
            op["repeat"] = big.trip
        where = next((w for w in wheres if w), "")
        return Row(op, op["name"], _opnames(ops_seen), op_names, big.scope, flops, trans,
                   _join(note, _where_note(where, big.trip)), "", min(members))

    def _read(self, n: Node, k: int, s: int) -> float:
        """Bytes instruction ``n`` reads of source ``s`` (its k-th operand)."""
        full = self.leaf_bytes(s) if self.p.nodes[s].ins.opcode in LEAVES else \
            self.p.nodes[s].ins.nbytes
        op = n.ins.opcode
        src_t = self.p.nodes[s].ins.dtype
        if k == 0 and op in ("gather", "dynamic-slice", "slice"):
            return min(full, _bytes(src_t, n.ins.shapes[0][1]))
        if k == 0 and op in ("dynamic-update-slice", "scatter"):
            upd = self.p.nodes[n.operands[-1 if op == "scatter" else 1]].ins
            return min(full, _bytes(src_t, upd.shapes[0][1]))  # read-modify-write in place
        return full

    def _written(self, n: Node) -> float:
        op = n.ins.opcode
        if op in ("dynamic-update-slice", "scatter"):
            upd = self.p.nodes[n.operands[-1 if op == "scatter" else 1]].ins
            return _bytes(n.ins.dtype, upd.shapes[0][1])
        return n.ins.nbytes


def _where_note(where: str, trip: int) -> str:
    if where == "counted loop":
        return f"loop body run {trip} times (XLA's cost analysis counts it once)"
    return f"in a {where}: counted once, as XLA does" if where else ""


def _target(ins: Instr) -> str:
    return ins.attr("custom_call_target") or ""


def _join(*xs) -> str:
    return "; ".join(x for x in xs if x)


def _opnames(ops: list[str]) -> str:
    seen = []
    for o in ops:
        if o not in seen:
            seen.append(o)
    return ",".join(seen[:6]) + (",..." if len(seen) > 6 else "")


def _is_softmax(ops, nodes, prog) -> bool:
    reducers = set()
    for n in nodes:
        if n.ins.opcode == "reduce":
            body = prog.comps.get((n.ins.attr("to_apply") or "").lstrip("%"), [])
            reducers |= {i.opcode for i in body if i.opcode not in LEAVES}
    return ("exponential" in ops and "maximum" in reducers and "add" in reducers
            and ("divide" in ops or "multiply" in ops))


def replica_groups(ins: Instr) -> list[list[int]]:
    """Device groups of a collective: explicit {{0,1},{2,3}}, iota [G,S]<=[dims]T(perm), or
    a collective-permute's source-target pairs (each pair a group)."""
    import numpy as np

    if ins.opcode == "collective-permute":
        pairs = ins.attr("source_target_pairs") or ""
        return [[int(a), int(b)] for a, b in re.findall(r"\{(\d+),(\d+)\}", pairs)]
    v = ins.attr("replica_groups") or ""
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", ins.attrs)
    if m:  # the SPMD partitioner's form: mesh['axis_0'=2,'axis_1'=4] {'axis_1'}
        axes = re.findall(r"'([^']+)'=(\d+)", m.group(1))
        names, sizes = [a for a, _ in axes], [int(n) for _, n in axes]
        spanned = [names.index(a) for a in re.findall(r"'([^']+)'", m.group(2)) if a in names]
        a = np.arange(math.prod(sizes)).reshape(sizes)
        keep = [i for i in range(len(sizes)) if i not in spanned]
        a = a.transpose(keep + spanned)
        return a.reshape(-1, math.prod(sizes[i] for i in spanned) if spanned else 1).tolist()
    m = re.match(r"\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", v)
    if m:
        shape = [int(x) for x in m.group(1).split(",")]
        dims = [int(x) for x in m.group(2).split(",")]
        a = np.arange(math.prod(dims)).reshape(dims)
        if m.group(3):
            a = a.transpose([int(x) for x in m.group(3).split(",")])
        return a.reshape(shape).tolist()
    return [[int(x) for x in g.split(",") if x] for g in re.findall(r"\{([\d,]*)\}", v)
            if g]


def dedupe(rows: list[Row]) -> None:
    """Workload op names are unique: a repeated name gets .2, .3, ... in program order."""
    seen: dict[str, int] = {}
    taken = {r.name for r in rows}
    for r in rows:
        k = seen.get(r.name, 0) + 1
        seen[r.name] = k
        if k > 1:
            new = f"{r.name}.{k}"
            while new in taken:
                k += 1
                new = f"{r.name}.{k}"
            seen[r.name] = k
            taken.add(new)
            r.name = new
            if r.op is not None:
                r.op["name"] = new


# ---- lowering and the whole analysis ------------------------------------------------------

def mesh_of(mesh) -> tuple[dict | None, list | None]:
    """(axis -> size, device ids in mesh order) of a jax Mesh, a dict or None."""
    if mesh is None:
        return None, None
    if isinstance(mesh, dict):
        return {str(k): int(v) for k, v in mesh.items()}, None
    try:
        return (dict(zip(mesh.axis_names, mesh.devices.shape)),
                [int(d.id) for d in mesh.devices.flat])
    except AttributeError:
        raise SpecError(f"mesh {mesh!r} is neither a jax Mesh nor a mapping of axis names to "
                        f"sizes (e.g. {{'x': 8}})") from None


def _lower(fn, args):
    import jax

    try:
        jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
        return jitted.lower(*args)
    except Exception as e:  # the user's function: any error is bad input for us
        name = getattr(fn, "__name__", repr(fn))
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hint = ("Check --args (shapes and dtypes, in the function's argument order) and "
                "--static.")
        if "does not match the specs of the input" in str(e):
            hint = ("A shard_map over a mesh with Explicit axes needs arguments sharded as its "
                    "in_specs; for abstract arguments make the mesh with Auto axes "
                    "(jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * "
                    "len(names))) or pass jax.ShapeDtypeStruct(..., sharding=...) from Python.")
        raise SpecError(f"lowering {name}({', '.join(_describe(a) for a in args)}) failed: "
                        f"{type(e).__name__}: {first} {hint}") from None


def _describe(a) -> str:
    import jax

    leaves = jax.tree_util.tree_leaves(a)
    if len(leaves) == 1 and hasattr(leaves[0], "shape"):
        x = leaves[0]
        return f"{x.dtype}{list(x.shape)}"
    return f"<pytree of {len(leaves)} arrays>"


def xla_cost(obj) -> dict:
    ca = obj.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    return dict(ca or {})


def analyze_program(fn, args, mesh=None, annotations: dict | None = None,
                    compile_: bool = True) -> dict:
    """Rows (Row) of ``fn(*args)`` lowered for the current backend, with XLA's own counts. A
    program sharded by jit shardings (GSPMD) is read after XLA's SPMD partitioner instead
    (``partitioned``), else (no compile) as the whole job's program."""
    import jax

    lowered = _lower(fn, args)
    text = lowered.as_text(dialect="hlo", debug_info=True)
    prog = Program(*parse_hlo(text))
    mesh_d, ids = mesh_of(mesh)
    low = xla_cost(lowered)
    out = {"mesh": mesh_d, "backend": jax.default_backend(), "gspmd": prog.gspmd,
           "partitioned": False, "jax_version": jax.__version__,
           "function": getattr(fn, "__name__", None) or "function",
           "xla_flops_lowered": float(low.get("flops", 0.0)) if low else None,
           "xla_transcendentals_lowered": float(low.get("transcendentals", 0.0)) if low else None,
           "xla_flops_compiled": None}
    if compile_:
        try:
            compiled, partitioned = _compile(lowered, prog.gspmd)
            out["xla_flops_compiled"] = float(xla_cost(compiled).get("flops", 0.0))
            if partitioned is not None:
                prog = Program(*parse_hlo(partitioned))
                out["partitioned"] = True
        except SpecError:
            raise
        except Exception as e:  # a program lowered for a mesh this host cannot compile
            out["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    rows = Builder(prog, mesh_d, ids, annotations).build()
    dedupe(rows)
    out["rows"] = rows
    return out


def _compile(lowered, gspmd: bool):
    """The compiled executable and, for a GSPMD program, the module right after XLA's SPMD
    partitioner (per-device shapes, the partitioner's collectives, nothing fused yet), read
    from XLA's own dump of that pass."""
    if not gspmd:
        return lowered.compile(), None
    import glob
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        compiled = lowered.compile(compiler_options={
            "xla_dump_to": tmp, "xla_dump_hlo_pass_re": "spmd-partitioning"})
        found = sorted(glob.glob(f"{tmp}/*after_spmd-partitioning*.txt"))
        if not found:
            return compiled, None
        with open(found[-1], encoding="utf-8") as f:
            return compiled, f.read()


def concrete_args(args):
    """Arrays for abstract arguments (ShapeDtypeStruct leaves): floats spread over [-1, 1),
    integers and bools zero (safe as indices)."""
    import jax
    import jax.numpy as jnp

    from .kernels import _data

    def make(x, i=[0]):  # noqa: B006  (a counter for distinct fills)
        if not isinstance(x, jax.ShapeDtypeStruct):
            return x
        i[0] += 1
        if jnp.issubdtype(x.dtype, jnp.floating):
            return _data(x.shape, "fp32", i[0]).astype(x.dtype)
        return jnp.zeros(x.shape, x.dtype)

    return jax.tree_util.tree_map(make, args)


def measure(fn, args, rows: list[dict], mode: str = "quick", profile: bool = True) -> dict:
    """Run ``fn`` on the current backend: the median time of one call (validate.timed) and,
    from a jax.profiler trace, seconds per row. A compiled kernel's time goes to the rows made
    from instructions with its op_name (its root's, for a fusion); several such rows share it
    in proportion to their t_lower; kernels matching no row are ``unattributed_s``."""
    import types

    import jax

    from . import validate as V

    real = concrete_args(tuple(args))
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    try:
        compiled = jitted.lower(*real).compile()
        jax.block_until_ready(compiled(*real))
    except Exception as e:  # the user's program on this backend
        first = (str(e).strip().splitlines() or [""])[0]
        raise SpecError(f"--measure: running {getattr(fn, '__name__', 'the function')} on "
                        f"{jax.default_backend()} failed: {type(e).__name__}: {first}. The "
                        f"analysis without --measure needs no run.") from None

    def run():
        return compiled(*real)

    t = V.timed(run, (), mode)
    out = {"t_measured": t["median_s"], "timing": t, "rows": {}, "unattributed_s": None}
    if not profile:
        return out
    names = V.hlo_op_names(compiled)
    prog = types.SimpleNamespace(run=run, compiled=compiled)
    times = V.profile_ops(prog, steps=3)
    by_opname: dict[str, list] = {}
    by_scope: dict[tuple, list] = {}
    for r in rows:
        for n in r["_op_names"]:
            by_opname.setdefault(n, []).append(r)
        by_scope.setdefault(scope_of(next(iter(r["_op_names"]), ""))
                            if r["_op_names"] else ("", False), []).append(r)
    per_row: dict[str, float] = {}
    lost = 0.0
    for kernel, secs in times.items():
        op_name = names.get(kernel, "")
        cands = by_opname.get(op_name) or by_scope.get(scope_of(op_name)) if op_name else None
        if not cands:
            lost += secs
            continue
        weights = [max(r.get("t_lower") or 0.0, 0.0) for r in cands]
        tot = sum(weights)
        for r, w in zip(cands, weights):
            share = w / tot if tot > 0 else 1 / len(cands)
            per_row[r["name"]] = per_row.get(r["name"], 0.0) + secs * share
    out["rows"] = per_row
    out["unattributed_s"] = lost
    out["profiled_s"] = sum(times.values())
    return out
