"""What torch's names that the catalogue does not have mean here: another name of a catalogue op
(`SAME_AS`), or an op the catalogue does not have yet, with what to write instead
(`NOT_IN_CATALOGUE`). `suggest_op` reads both before falling back to spelling, so `sort` is not
offered `sqrt`, nor `batch_norm` `layer_norm`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# torch (or numpy) names of catalogue ops: torch.clip is torch.clamp, and so on.
SAME_AS: dict[str, str] = {
    "divide": "div",
    "true_divide": "div",
    "swapaxes": "transpose",
    "logistic": "sigmoid",
    "swish": "silu",
    "view": "reshape",
    "broadcast_to": "expand",
    "logaddexp": "logsumexp",
    "inverse": "inv",
}

_SEVERAL_OUTPUTS = "an op with several outputs, not in the catalogue yet"
# torch ops people reach for that the catalogue does not have: why, and what to write instead.
NOT_IN_CATALOGUE: dict[str, str] = {
    "split": f"{_SEVERAL_OUTPUTS}; narrow(x, dim, start, length) takes one piece",
    "chunk": f"{_SEVERAL_OUTPUTS}; narrow(x, dim, start, length) takes one piece",
    "unbind": f"{_SEVERAL_OUTPUTS}; select(x, dim, index) takes one slice",
    "dropout": "random, so not checkable against torch: multiply by a fixed mask input instead",
    "eig": _SEVERAL_OUTPUTS,
}


def suggest_op(word: str, names: Iterable[str]) -> str:
    """What to say after "unknown op 'word'": the catalogue op it means (``"; torch.clip is
    clamp here: write clamp(...)"``), why it is missing and what to write instead, or close
    spellings: one edit away (a letter added, dropped, changed, or two swapped: 'tahn') or a
    difflib ratio >= 0.8, so only near-misses; else a pointer to `gradcase ops`."""
    known = set(names)
    if word in SAME_AS and SAME_AS[word] in known:
        return f"; '{word}' is '{SAME_AS[word]}' here: write {SAME_AS[word]}(...)"
    if word in NOT_IN_CATALOGUE:
        return f"; '{word}' is {NOT_IN_CATALOGUE[word]}"
    near = [c for c in sorted(known) if _one_edit(word, c)]
    close = list(dict.fromkeys(near + difflib.get_close_matches(word, sorted(known), cutoff=0.8)))
    close = close[:3]
    if not close:
        return " (`gradcase ops` lists the ops)"
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def _one_edit(a: str, b: str) -> bool:
    """``a`` and ``b`` differ by one insertion, deletion, substitution or adjacent swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


# --- torch's spellings of catalogue ops ------------------------------------------------------
# torch's aliases of catalogue ops, with the same parameters (torch.clip is torch.clamp): a graph
# may call them by either name, as a function, through torch. or as a method; checked against
# torch by tests/test_spellings.py.
TORCH_ALIASES: dict[str, str] = {
    "clip": "clamp",
    "absolute": "abs",
    "multiply": "mul",
    "subtract": "sub",
    "negative": "neg",
    "arctan2": "atan2",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "arcsinh": "asinh",
    "arccosh": "acosh",
    "arctanh": "atanh",
    "concat": "cat",
    "concatenate": "cat",
    "swapdims": "transpose",
    "moveaxis": "movedim",
    "fix": "trunc",
}

# Catalogue ops that torch also has as Tensor methods (x.sum(dim=0), x.softmax(-1)); checked
# against torch.Tensor by tests/test_spellings.py.
TENSOR_METHODS = frozenset(
    """
    abs acos acosh add addmm amax amin aminmax asin asinh atan atan2 atanh bitwise_and
    bitwise_not bitwise_or bitwise_xor bmm ceil clamp cos cosh cummax cummin cumprod cumsum
    diagonal dist div dot eq erf erfc exp exp2 expand expm1 flatten flip floor frac gather ge
    gt hardshrink index_add index_copy index_fill index_select inner le log log10 log1p log2
    log_softmax logical_and logical_not logical_or logical_xor logsumexp lt masked_fill matmul
    max maximum mean min minimum mm movedim mul mv nanmean nansum narrow ne neg norm outer
    permute pow prelu prod reciprocal relu repeat reshape roll round rsqrt scatter scatter_add
    select sigmoid sign sin sinh softmax sort sqrt square squeeze std sub sum t take
    take_along_dim tan tanh trace transpose tril triu trunc unsqueeze var where
    cholesky cholesky_solve det logdet matrix_exp matrix_power slogdet
    kron diag diag_embed
    topk kthvalue median nanmedian msort argsort scatter_reduce
    """.split()
)
# Tensor methods named as a catalogue op but meaning something else, so not spellings of it:
# Tensor.unfold(dimension, size, step) is a sliding view, not F.unfold's im2col; Tensor.svd is
# torch.svd (some=True, V rather than Vh), Tensor.qr takes some=, and Tensor.cross's dim
# defaults to the first dim of size 3 (the catalogue's cross is torch.linalg.cross, dim=-1).
OTHER_METHODS = frozenset({"unfold", "svd", "qr", "cross"})
# Tensor methods of a catalogue op under another name, the tensor their first operand:
# Tensor.inverse() is torch.linalg.inv(A).
METHOD_ALIASES: dict[str, str] = {"inverse": "inv"}
# The namespaces a graph may call ops through, with the catalogue ops each has under the same
# name and meaning (checked against torch by tests/test_spellings.py). torch.embedding,
# torch.layer_norm and the like are left out: their signatures there are torch's internal ones;
# F.<name> is the spelling to use.
_TORCH = TENSOR_METHODS - {"expand", "repeat"} | {
    "cat",
    "stack",
    "einsum",
    "selu",
    "celu",
    "cosine_similarity",
    "pairwise_distance",
    "var_mean",
    "std_mean",
    *"conv3d conv_transpose1d conv_transpose2d adaptive_avg_pool1d".split(),
    *"pixel_shuffle pixel_unshuffle".split(),
    "cdist",
    "pdist",
    "tensordot",
    "inverse",
}
_F = frozenset(
    """
    avg_pool1d avg_pool2d binary_cross_entropy binary_cross_entropy_with_logits conv1d conv2d
    cross_entropy elu embedding gelu hardtanh huber_loss kl_div l1_loss layer_norm leaky_relu
    linear log_softmax max_pool1d max_pool2d mse_loss nll_loss pad relu sigmoid silu
    smooth_l1_loss softmax softplus tanh
    celu glu hardshrink hardsigmoid hardswish logsigmoid mish prelu relu6 selu softmin softshrink
    softsign tanhshrink threshold
    cosine_embedding_loss gaussian_nll_loss hinge_embedding_loss margin_ranking_loss
    multi_margin_loss multilabel_soft_margin_loss poisson_nll_loss soft_margin_loss
    cosine_similarity pairwise_distance normalize rms_norm
    interpolate grid_sample scaled_dot_product_attention
    conv3d conv_transpose1d conv_transpose2d max_pool3d avg_pool3d adaptive_avg_pool1d
    adaptive_avg_pool2d adaptive_max_pool1d adaptive_max_pool2d pixel_shuffle pixel_unshuffle
    unfold fold
    batch_norm group_norm instance_norm local_response_norm pdist triplet_margin_loss ctc_loss
    """.split()
)
NAMESPACES: dict[str, frozenset[str]] = {
    "torch": _TORCH,
    "torch.nn.functional": _F,
    "torch.special": frozenset(
        "erf erfc exp2 expm1 log1p log_softmax logsumexp round softmax".split()
    ),
    "torch.linalg": frozenset({"matmul", "norm", "vector_norm"})
    | frozenset("inv det slogdet solve solve_triangular cholesky matrix_power matrix_exp".split())
    | frozenset("eigh svdvals svd qr pinv matrix_norm cross".split()),
}
# Other spellings of those namespaces.
NAMESPACE_ALIASES: dict[str, str] = {
    "F": "torch.nn.functional",
    "nn.functional": "torch.nn.functional",
    "functional": "torch.nn.functional",
    "special": "torch.special",
    "linalg": "torch.linalg",
}
# (namespace, name) -> (catalogue op, keyword renames): torch.linalg.norm without ord is the
# 2-norm of the flattened input or the Frobenius norm, as norm(x).
RENAMED: dict[tuple[str, str], tuple[str, dict[str, str]]] = {
    ("torch.linalg", "norm"): ("norm", {}),
    # torch.det(input) is torch.linalg.det(A), and so on: the catalogue names linalg's A.
    **{
        ("torch", n): (n, {"input": "A"})
        for n in "cholesky det matrix_exp matrix_power slogdet".split()
    },
    ("torch", "inverse"): ("inv", {"input": "A"}),
}
