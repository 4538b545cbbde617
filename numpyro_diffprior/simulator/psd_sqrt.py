"""Square roots and Cholesky factors of batches of small symmetric PSD matrices: the colouring
step of the log-normal simulator (`simulator.lognormal`, docs/design.md §2.3) and of the
non-centred HMC refinement (`infer.noncentred`).

`psd_sqrt(a)` is the symmetric root of each C x C matrix in the last two axes of `a`, with
negative eigenvalues clipped to 0 (the log-normal Gaussian power is only positive
semi-definite, and a Cholesky factor can be NaN). The eigen-decompositions are cyclic Jacobi
rotations vectorised over the batch (`jacobi_eigh`; on a CPU about 4x faster than LAPACK `eigh`
called per matrix), and small matrix products are written out entry by entry. The root has a
custom JVP (Daleckii-Krein divided differences written as 1 / (s_i + s_j)), so its gradient
stays finite for degenerate eigenvalues, where the gradient of `eigh` itself is inf * 0.
`cholesky_batch_last`, `solve_lower_batch_last` and `matvec_batch_last` are written out entry by
entry the same way: no LAPACK call, whose batched CPU kernels can deadlock when two of them run
at once in one XLA program (docs/install.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "jacobi_eigh",
    "psd_sqrt",
    "psd_sqrt_batch_last",
    "batch_matmul",
    "batch_transpose",
    "cholesky_batch_last",
    "solve_lower_batch_last",
    "matvec_batch_last",
]


def _sqrt_eigen(w):
    return jnp.sqrt(jnp.maximum(w, 0.0))


def batch_matmul(a, b):
    """Matrix product of batch-last stacks of small matrices, (C, C, ...) x (C, C, ...), written
    out entry by entry: on a CPU, XLA's batched dot costs 30x more for thousands of 5 x 5
    matrices, and a broadcast sum over the middle axis 200x more."""
    n, m = a.shape[0], b.shape[1]
    rows = [[sum(a[i, k] * b[k, j] for k in range(b.shape[0])) for j in range(m)] for i in range(n)]
    return jnp.stack([jnp.stack(row) for row in rows])


def batch_transpose(a):
    """Transpose of each matrix of a batch-last stack (C, C, ...)."""
    return jnp.swapaxes(a, 0, 1)


_JACOBI_SWEEPS = 4


def jacobi_eigh(a, sweeps: int = _JACOBI_SWEEPS):
    """Eigen-decomposition of a batch-last stack of symmetric matrices a (C, C, ...) by cyclic
    Jacobi rotations, vectorised over the batch: ``a = v diag(w) v^T`` with w (C, ...) unsorted
    and v (C, C, ...) orthogonal.

    Every rotation is a few element-wise operations on the whole batch, so thousands of 5 x 5
    matrices cost a few times less than LAPACK's ``syevd`` called once per matrix, and the
    result is relatively accurate. Four sweeps (the default): the log-normal power matrices of
    the LSST-Y10 presets reach float32 rounding after four (a fifth changes nothing), after
    three they are 2e-4 off.
    """
    n = a.shape[0]
    pairs = [(p, q) for p in range(n - 1) for q in range(p + 1, n)]

    def sweep(_, carry):
        # the carry is the entries (upper triangle of a, all of v) as separate arrays: no
        # slicing and stacking of strided (C, C, ...) arrays per sweep
        upper, v = carry
        a = [[None] * n for _ in range(n)]
        for (i, j), entry in zip(_upper(n), upper, strict=True):
            a[i][j] = a[j][i] = entry
        v = [list(row) for row in v]
        for p, q in pairs:
            apq = a[p][q]
            zero = apq == 0
            # rotation angle that zeroes a_pq: t = tan(phi) of the smaller root
            tau = jnp.clip((a[q][q] - a[p][p]) / jnp.where(zero, 1.0, 2.0 * apq), -1e15, 1e15)
            sign = jnp.where(tau < 0, -1.0, 1.0)
            t = jnp.where(zero, 0.0, sign / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau)))
            c = jax.lax.rsqrt(1.0 + t * t)
            s = t * c
            a_pp, a_qq = a[p][p] - t * apq, a[q][q] + t * apq
            for r in range(n):
                if r not in (p, q):
                    a_rp, a_rq = a[r][p], a[r][q]
                    a[r][p] = a[p][r] = c * a_rp - s * a_rq
                    a[r][q] = a[q][r] = s * a_rp + c * a_rq
            a[p][p], a[q][q] = a_pp, a_qq
            a[p][q] = a[q][p] = jnp.zeros_like(apq)
            for r in range(n):
                v_rp, v_rq = v[r][p], v[r][q]
                v[r][p] = c * v_rp - s * v_rq
                v[r][q] = s * v_rp + c * v_rq
        return [a[i][j] for i, j in _upper(n)], v

    a = 0.5 * (a + batch_transpose(a))
    upper = [a[i, j] for i, j in _upper(n)]
    v = [[jnp.full_like(a[0, 0], float(i == j)) for j in range(n)] for i in range(n)]
    upper, v = jax.lax.fori_loop(0, sweeps, sweep, (upper, v))
    diag = {ij: entry for ij, entry in zip(_upper(n), upper, strict=True)}
    return jnp.stack([diag[i, i] for i in range(n)]), jnp.stack([jnp.stack(row) for row in v])


def _upper(n):
    return [(i, j) for i in range(n) for j in range(i, n)]


@jax.custom_jvp
def psd_sqrt_batch_last(a):
    """``psd_sqrt`` of a batch-last stack (C, C, ...)."""
    w, v = jacobi_eigh(a)
    return batch_matmul(v * _sqrt_eigen(w)[None], batch_transpose(v))


@psd_sqrt_batch_last.defjvp
def _psd_sqrt_last_jvp(primals, tangents):
    # Daleckii-Krein: dS = V (F o V^T dA V) V^T, F_ij = (s_i - s_j) / (w_i - w_j),
    # = 1 / (s_i + s_j) when both eigenvalues are positive (no eigen-gap in the denominator).
    (a,), (da,) = primals, tangents
    w, v = jacobi_eigh(a)
    s = _sqrt_eigen(w)
    vt = batch_transpose(v)
    s_out = batch_matmul(v * s[None], vt)
    pos = w > 0
    both = pos[:, None] & pos[None, :]
    one = pos[:, None] ^ pos[None, :]
    s_sum = s[:, None] + s[None, :]
    gap = w[:, None] - w[None, :]
    f_both = 1.0 / jnp.where(both, s_sum, 1.0)
    f_one = (s[:, None] - s[None, :]) / jnp.where(one, gap, 1.0)
    f = jnp.where(both, f_both, jnp.where(one, f_one, 0.0))
    # The tangent path works on lists of entries split off once (`_entries`): reverse mode
    # transposes a split into one concatenation, where indexing each entry would become a
    # full-size pad per entry (XLA then compiles the gradient 15x slower and runs it 20-40x
    # slower).
    v_e, vt_e, f_e, da_e = (_entries(x) for x in (v, vt, f, da))
    n = len(da_e)
    da_e = [[0.5 * (da_e[i][j] + da_e[j][i]) for j in range(n)] for i in range(n)]
    inner = _entries_matmul(_entries_matmul(vt_e, da_e), v_e)
    inner = [[f_e[i][j] * inner[i][j] for j in range(n)] for i in range(n)]
    ds = _entries_matmul(_entries_matmul(v_e, inner), vt_e)
    return s_out, jnp.stack([jnp.stack(row) for row in ds])


def _entries(x):
    """The entries of a batch-last stack x (n, m, ...) as nested lists of (...) arrays."""
    n, m = x.shape[:2]
    rows = jax.lax.split(x, [1] * n, axis=0)
    return [[e[0, 0] for e in jax.lax.split(row, [1] * m, axis=1)] for row in rows]


def _entries_matmul(a, b):
    """Matrix product of two matrices given as nested lists of entries (`_entries`)."""
    inner, cols = len(b), len(b[0])
    return [[sum(row[k] * b[k][j] for k in range(inner)) for j in range(cols)] for row in a]


def psd_sqrt(a):
    """Symmetric square root of a batch of symmetric (..., C, C) matrices, negative
    eigenvalues clipped to 0: ``S = V diag(sqrt(max(w, 0))) V^T`` (`jacobi_eigh`)."""
    a = jnp.asarray(a)
    return jnp.moveaxis(psd_sqrt_batch_last(jnp.moveaxis(a, (-2, -1), (0, 1))), (0, 1), (-2, -1))


def _stack(entries):
    return jnp.stack([jnp.stack(row) for row in entries])


def cholesky_batch_last(a):
    """Lower Cholesky factors L (C, C, ...) of a batch-last stack of symmetric positive-definite
    matrices a (C, C, ...), ``a = L L^T`` (the lower triangle of a is read); NaN where a matrix
    is not positive definite."""
    e = _entries(a)
    n = len(e)
    zero = jnp.zeros_like(e[0][0])
    low = [[zero] * n for _ in range(n)]
    for j in range(n):
        low[j][j] = jnp.sqrt(e[j][j] - sum(low[j][k] ** 2 for k in range(j)))
        for i in range(j + 1, n):
            low[i][j] = (e[i][j] - sum(low[i][k] * low[j][k] for k in range(j))) / low[j][j]
    return _stack(low)


def solve_lower_batch_last(low, b):
    """x (C, ...) with ``L x = b`` for lower-triangular L (C, C, ...) by forward substitution;
    b (C, ...) may be complex."""
    e = _entries(low)
    rows = jax.lax.split(b, [1] * b.shape[0], axis=0)
    x = []
    for i, row in enumerate(rows):
        x.append((row[0] - sum(e[i][k] * x[k] for k in range(i))) / e[i][i])
    return jnp.stack(x)


def matvec_batch_last(a, x):
    """``a x`` for a batch-last stack of matrices a (C, M, ...) and vectors x (M, ...)."""
    e = _entries(a)
    cols = [c[0] for c in jax.lax.split(x, [1] * x.shape[0], axis=0)]
    return jnp.stack([sum(row[k] * cols[k] for k in range(len(cols))) for row in e])
