"""FractalNet: ultra-deep networks without residuals, with drop-path (docs/networks.md#fractalnet).

Paper: Larsson, Maire, Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without Residuals"
(ICLR 2017, arXiv 1605.07648). Original code: gustavla/fractalnet (Caffe layers ``FractalJoin`` and
``GlobalDropTrigger`` plus a prototxt generator).

Structure: ``blocks`` (B) fractal blocks, each followed by a 2x2 max-pool (32 -> 1 for B = 5), then
the classifier; no stem convolution. Block rule f_1(z) = conv(z), f_{C+1}(z) = join(f_C(f_C(z)),
conv(z)), built flattened: column c (1 = shallowest .. C = deepest) holds 2^(c-1) conv units; at row r
column c convolves iff r is divisible by 2^(C-c), and the columns that convolved at row r are merged
by one element-wise mean join. Conv unit: conv3x3 -> Dropout(rate of the block) -> BN -> ReLU. The
deepest path has B * 2^(C-1) convolutions: ``fractalnet20`` (C = 3), ``fractalnet40`` (C = 4).

Drop-path (training only, decided once per mini-batch as in the authors' join layer): with
probability ``global_prob`` a pass is *global* (one column is drawn for the whole net and every join
passes only it), otherwise *local* (each join drops each input with probability ``drop_path``,
keeping at least one; if all drop, one is revived at random). ``drop_path=0, global_prob=0`` builds
plain mean joins; ``global_prob=0`` is pure local, ``global_prob=1`` pure global. All randomness is
made by ``F.Dropout`` on tensors of ones (see :mod:`gluonfuse.models.blocks`), so it stays live in a
hybridized net and is the identity at inference: inference and the exported graph compute plain
mean joins. The exported symbol holds no random operator; the mask arithmetic exports as ``Dropout``
nodes over ``ones_like`` constants, inert in inference mode.

Single-column evaluation (same weights):

* ``net.column_net(c=None)`` returns a network computing column ``c`` alone (default: the deepest, C),
  sharing the very Parameter objects of ``net``: evaluate it right after (or during) training, give
  it to ``export_model`` to export one column as its own symbol graph, or loop ``c`` over
  ``range(1, C + 1)`` to analyse every column.
* ``get_model('fractalnet', column=c, ...)`` builds that column network from scratch; its parameter
  names are a subset of the full net's, so ``load_parameters(full_params, ignore_extra=True)`` loads
  a trained full net into it.

Deviations from the paper and the authors' code:

* Parameters: the released layout (C = 3, B = 5, widths 64, 128, 256, 512, 512, conv without bias)
  has 33,724,618 trainable parameters for 10 classes (33,770,788 for 100). The paper prints 38.6M for
  the 20-layer net and 22.9M for the 40-layer one; neither is reproducible from any released layout
  (the same widths at C = 4 give 76,106,634). We follow the released layout (docs/anchors.md#fractalnet-parameters).
* The classifier is global average pool -> Dense; on the 1x1 map of B = 5 blocks this is exactly the
  authors' Dense on the flattened map, and it keeps other block counts (smaller B) well defined.
* The last row's joins of the recursive rule (a 2-way join inside a 3-way one) are one k-way mean
  join, as the flattened wiring says (docs/networks.md#fractal-wiring), so every column has weight 1/k there.
* In a global pass, joins off the chosen column's path (their output is discarded downstream) use
  local masks instead of producing nothing, so BatchNorm running statistics never see zeros.
"""
import dataclasses
import numbers
from typing import Optional

from mxnet.gluon import nn

from gluonfuse.models.blocks import ClassifierHead, ConvUnit, DropPathJoin, MeanJoin, live_ones
from gluonfuse.models.blocks import train_event, uniform_one_hot
from gluonfuse.models.registry import register_family, register_preset
from gluonfuse.models.rules import check_positive_int, check_rate
from gluonfuse.models.views import MASKS_IN_FP32, Views, one_path, plus, shift

MAX_BLOCKS = 5  # a 32x32 input halves to 1x1 after five pools


def _resolve_columns(columns, depth, blocks):
    """C from ``columns`` and/or ``depth`` (= B * 2^(C-1)); C = 3 (the released layout) when neither."""
    if depth is None:
        return 3 if columns is None else columns
    check_positive_int("depth", depth)
    valid = [blocks * 2 ** (c - 1) for c in range(1, 8)]
    if depth not in valid:
        below = [d for d in valid if d < depth]
        above = [d for d in valid if d > depth]
        near = " and ".join(str(d) for d in (below[-1:] + above[:1]))
        raise ValueError(f"depth {depth} does not fit FractalNet's rule depth = blocks * 2^(columns-1) "
                         f"with {blocks} blocks; nearest valid depths: {near}")
    from_depth = valid.index(depth) + 1
    if columns is not None and columns != from_depth:
        raise ValueError(f"depth {depth} means {from_depth} columns with {blocks} blocks, not {columns}; "
                         "give one of depth or columns")
    return from_depth


def _per_block(name, value, blocks, default, check, scalar_ok=False):
    if value is None:
        value = default
    if scalar_ok and isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value] * blocks  # one rate for every block
    if not isinstance(value, (list, tuple)) or len(value) != blocks:
        raise ValueError(f"{name} must be {blocks} values (one per block), got {value!r}")
    for v in value:
        check(name, v)
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class FractalSpec:
    """A CIFAR-size FractalNet; every field has the released layout's value by default.

    ``columns`` C and ``depth`` (of the deepest path, B * 2^(C-1)) are two ways to say the same thing;
    give either. ``widths``/``dropout`` have one value per block (dropout may be one number for all).
    ``column`` = c builds column c alone (see the module docstring).
    """

    columns: Optional[int] = None  # C; 3 unless depth says otherwise
    blocks: int = 5  # B; a 32x32 input allows at most 5
    widths: Optional[tuple] = None  # default 64 * 2^i capped at 512: (64, 128, 256, 512, 512)
    dropout: Optional[tuple] = None  # default 0.1 * i: (0, 0.1, 0.2, 0.3, 0.4), the paper's rates
    drop_path: float = 0.15  # local drop-path: each join input dropped with this probability
    global_prob: float = 0.5  # share of mini-batches that use global drop-path
    column: Optional[int] = None  # build this column alone (1 = shallowest .. C = deepest)
    depth: Optional[int] = None  # deepest path, B * 2^(C-1); resolved from columns when not given
    classes: int = 10

    input_shape = (3, 32, 32)

    def __post_init__(self):
        check_positive_int("blocks", self.blocks)
        if self.blocks > MAX_BLOCKS:
            raise ValueError(f"blocks must be 1..{MAX_BLOCKS}: each block halves the 32x32 input, got {self.blocks}")
        columns = _resolve_columns(self.columns, self.depth, self.blocks)
        check_positive_int("columns", columns)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "depth", self.blocks * 2 ** (columns - 1))
        widths = _per_block("widths", self.widths, self.blocks,
                            [min(64 * 2 ** i, 512) for i in range(self.blocks)], check_positive_int)
        object.__setattr__(self, "widths", widths)
        dropout = _per_block("dropout", self.dropout, self.blocks,
                             [round(0.1 * i, 2) for i in range(self.blocks)], check_rate, scalar_ok=True)
        object.__setattr__(self, "dropout", tuple(float(d) for d in dropout))
        object.__setattr__(self, "drop_path", check_rate("drop_path", self.drop_path))
        object.__setattr__(self, "global_prob", check_rate("global_prob", self.global_prob, allow_one=True))
        if self.column is not None:
            check_positive_int("column", self.column)
            if self.column > columns:
                raise ValueError(f"column must be 1..{columns} (1 = shallowest, {columns} = deepest), "
                                 f"got {self.column}")
        check_positive_int("classes", self.classes)

    @property
    def name(self):
        tag = f"fractalnet_c{self.columns}_b{self.blocks}"
        return tag if self.column is None else f"{tag}_col{self.column}"

    @property
    def live_drop_path(self):
        """True when the joins draw masks in training (a full net with some drop-path)."""
        return self.column is None and self.columns > 1 and (self.drop_path > 0 or self.global_prob > 0)

    def rows(self):
        """Per row of a block: the columns (1-based) that convolve there, the last row holding all."""
        c_max = self.columns
        cols = range(1, c_max + 1) if self.column is None else [self.column]
        return [[c for c in cols if r % 2 ** (c_max - c) == 0] for r in range(1, 2 ** (c_max - 1) + 1)]

    def kwargs(self):
        return {"columns": self.columns, "blocks": self.blocks, "widths": list(self.widths),
                "dropout": list(self.dropout), "drop_path": self.drop_path, "global_prob": self.global_prob,
                "column": self.column, "classes": self.classes}

    def describe(self):
        joins = [len(r) for r in self.rows() if len(r) > 1]
        return {"columns": self.columns, "blocks": self.blocks, "widths": list(self.widths),
                "dropout": list(self.dropout),
                "longest_path": self.depth if self.column is None else self.blocks * 2 ** (self.column - 1),
                "join_inputs_per_block": joins, "drop_path": self.drop_path,
                "global_prob": self.global_prob, "column": self.column}


class FractalBlock(nn.HybridBlock):
    """One fractal block, flattened: columns ``c{c}_`` of conv units ``u{j}_`` and one join per row.

    With ``only_column`` it holds (and computes) that column alone, under the same parameter names.
    """

    def __init__(self, spec, in_channels, channels, dropout, **kwargs):
        super().__init__(**kwargs)
        self.schedule = spec.rows()
        self.live = spec.live_drop_path
        counts = {}
        for row in self.schedule:
            for c in row:
                counts[c] = counts.get(c, 0) + 1
        with self.name_scope():
            for c, n in sorted(counts.items()):
                col = nn.HybridSequential(prefix=f"c{c}_")
                with col.name_scope():
                    for j in range(n):
                        # the first conv of every column maps the block's input width to its output width
                        col.add(ConvUnit(in_channels if j == 0 else channels, channels, 3, dropout=dropout,
                                         prefix=f"u{j + 1}_"))
                setattr(self, f"c{c}", col)
            for r, row in enumerate(self.schedule):
                if len(row) > 1:
                    join = DropPathJoin(spec.drop_path, prefix=f"join{r + 1}_") if self.live else MeanJoin(
                        prefix=f"join{r + 1}_")
                    setattr(self, f"join{r + 1}", join)

    def column(self, c):
        return getattr(self, f"c{c}")

    def run(self, F, x, ctrl=None):
        """The block's output and the keep masks of its joins (empty unless drop-path is live).

        ``ctrl``: the net's (C+1,) control vector, a global flag then a one-hot chosen column.
        """
        state, used, masks = {}, {}, []
        for r, row in enumerate(self.schedule):
            if not row:  # a single-column net skips the rows its column does not convolve
                continue
            outs = []
            for c in row:
                j = used.get(c, 0)
                outs.append(self.column(c)[j](state.get(c, x)))
                used[c] = j + 1
            if len(outs) == 1:
                y = outs[0]
            elif self.live:
                sel = [F.slice_axis(ctrl, axis=0, begin=i, end=i + 1) for i in [0] + row]
                y, mask = getattr(self, f"join{r + 1}")(F.concat(*sel, dim=0), *outs)
                masks.append(mask)
            else:
                y = getattr(self, f"join{r + 1}")(*outs)
            for c in row:
                state[c] = y
        return y, masks

    def paths(self, poly):
        """The paths through the block of every path in ``poly``: one layer per conv, joins sum."""
        state, y = {}, poly
        for row in self.schedule:
            if row:
                y = plus(*[shift(state.get(c, poly), 1) for c in row])
                state.update((c, y) for c in row)
        return y

    def hybrid_forward(self, F, x, ctrl=None):
        return self.run(F, x, ctrl)[0]


class FractalNet(Views, nn.HybridBlock):
    """FractalNet for 32x32 input: B fractal blocks, each followed by a 2x2 max-pool, then the classifier.

    ``return_masks=True`` (tests, analysis) makes the net return ``(logits, ctrl, masks)``: ``ctrl``
    is the (C+1,) control vector (global flag, one-hot chosen column) and ``masks`` the keep masks of
    every join concatenated in :meth:`join_columns` order.

    Its views (:mod:`gluonfuse.models.views`): the columns of a full net; paths count convolutions
    only, so the deepest path of FractalNet-20 is 20.
    """

    PATH_UNIT = "convolutions on the path"

    def __init__(self, spec, return_masks=False, **kwargs):
        kwargs.setdefault("prefix", "fractalnet_")
        super().__init__(**kwargs)
        self.spec = spec
        self.return_masks = return_masks
        with self.name_scope():
            kin = 3
            for b, (width, rate) in enumerate(zip(spec.widths, spec.dropout)):
                setattr(self, f"b{b + 1}", FractalBlock(spec, kin, width, rate, prefix=f"b{b + 1}_"))
                kin = width
            self.head = ClassifierHead(kin, spec.classes, prefix="head_")

    @property
    def fractal_blocks(self):
        return [getattr(self, f"b{b + 1}") for b in range(self.spec.blocks)]

    def join_columns(self):
        """``[(block, row, columns), ...]`` for every drop-path join, in the order of the returned masks."""
        if not self.spec.live_drop_path:
            return []
        return [(b + 1, r + 1, tuple(row)) for b in range(self.spec.blocks)
                for r, row in enumerate(self.spec.rows()) if len(row) > 1]

    def variant(self, **changes):
        """The same network with spec fields changed (e.g. ``column=2``), sharing these Parameters."""
        spec = dataclasses.replace(self.spec, **changes)
        net = type(self)(spec, prefix=self.prefix, params=self.collect_params())
        net.family = getattr(self, "family", "fractalnet")  # what get_model would have set
        return net

    def column_net(self, c=None):
        """Column ``c`` alone (default: the deepest, C) as a network sharing this net's Parameters."""
        return self.variant(column=self.spec.columns if c is None else c)

    def column_count(self):
        return self.spec.columns if self.spec.column is None else 0

    def fp32_layers(self):
        return [MASKS_IN_FP32]  # the drop-path masks

    def column_view(self, column):
        if self.spec.column is not None:
            raise ValueError(f"{self.spec.name} is a single FractalNet column; its columns are the full net's")
        if not 1 <= column <= self.spec.columns:
            raise ValueError(f"column must be 1..{self.spec.columns} (1 = shallowest), got {column}")
        return self.column_net(column)

    def path_lengths(self, removed=()):
        if removed:
            raise ValueError(f"{self.spec.name} has no removable branches")
        poly = one_path(0)
        for block in self.fractal_blocks:
            poly = block.paths(poly)  # pools and the Dense are not counted (the paper's depth)
        return poly

    def _control(self, F, x):
        one = live_ones(F, x)
        flag = train_event(F, one, self.spec.global_prob)
        return F.concat(flag, *uniform_one_hot(F, one, self.spec.columns), dim=0)

    def hybrid_forward(self, F, x):
        ctrl = self._control(F, x) if self.spec.live_drop_path else None
        masks = []
        for block in self.fractal_blocks:
            x, block_masks = block.run(F, x, ctrl)
            masks += block_masks
            x = F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max")
        out = self.head(x)
        if self.return_masks and masks:
            return out, ctrl, F.concat(*masks, dim=0)
        return out


register_family("fractalnet", FractalSpec, FractalNet,
                "FractalNet: fractal blocks of C columns joined by means, with drop-path",
                anchors=[({}, 33_724_618), ({"classes": 100}, 33_770_788), ({"columns": 4}, 76_106_634)])
register_preset("fractalnet20", "fractalnet", "FractalNet-20: C = 3, B = 5, the released layout (33.7M)",
                columns=3, blocks=5, anchors={10: 33_724_618, 100: 33_770_788})
register_preset("fractalnet40", "fractalnet", "FractalNet-40: C = 4, B = 5, released widths (76.1M)",
                heavy=True, columns=4, blocks=5, anchors={10: 76_106_634})
