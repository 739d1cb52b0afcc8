"""SPHARM basis, least-squares fit and reconstruction (methods.md §1.4 item 5).

Complex basis as in SPHARM-MAT's ``calculate_SPHARM_basis``:
``Y_l^m(θ, φ) = sqrt((2l+1)/(4π)·(l−m)!/(l+m)!) P_l^m(cos θ) e^{imφ}`` with the Condon–Shortley phase,
``Y_l^{−m} = (−1)^m conj(Y_l^m)``; θ is the polar angle from +z, φ ∈ [0, 2π) the azimuth. Column ``l² + l + m``
holds ``Y_l^m`` (l = 0..L, m = −l..l), so L = 15 gives 256 columns. scipy's ``sph_harm_y(l, m, θ, φ)`` is this
function (verified to 1e-12 against SPHARM-MAT).

The surface ``v(θ, φ) = Σ_{l≤L} Σ_m c_lm Y_l^m(θ, φ)``, ``c_lm ∈ ℂ³``, is fitted by least squares over the mesh
vertices at their sphere positions (SPHARM-MAT ``ExpLSF``). Because x, y, z are real, the fit is done in the
equivalent *real* basis ``R = (Y T).real`` (T unitary, block-diagonal per degree) with ``numpy.linalg.lstsq``
and mapped back, ``c = T a``; this is the same least-squares solution, 4× cheaper, and satisfies
``c_{l,−m} = (−1)^m conj(c_lm)`` exactly. An optional Tikhonov term ``λ·l(l+1)`` (``regularization``; 0 by
default, i.e. plain SPHARM-MAT LSF) damps high degrees for badly sampled small meshes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .harmonics import legendre_by_order, spherical_harmonics

#: SPHARM degree used by Wu et al. (SPHARM-MAT default for the paper).
DEFAULT_DEGREE: int = 15


def n_coefficients(degree: int) -> int:
    """Number of (l, m) pairs up to ``degree``: (L+1)²."""
    return (degree + 1) ** 2


def lm_index(l: int, m: int) -> int:
    """Column / row index of (l, m): ``l² + l + m``."""
    return l * l + l + m


@lru_cache(maxsize=32)
def degree_orders(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """(l, m) of every column, each an int array of length (L+1)²."""
    ls = np.concatenate([np.full(2 * l + 1, l) for l in range(degree + 1)])
    ms = np.concatenate([np.arange(-l, l + 1) for l in range(degree + 1)])
    ls.setflags(write=False)
    ms.setflags(write=False)
    return ls, ms


def cartesian_to_angles(sphere: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (n, 3) → (θ polar angle from +z in [0, π], φ azimuth in [0, 2π))."""
    u = np.asarray(sphere, float)
    theta = np.arccos(np.clip(u[:, 2], -1.0, 1.0))
    phi = np.mod(np.arctan2(u[:, 1], u[:, 0]), 2.0 * np.pi)
    return theta, phi


def basis(theta: np.ndarray, phi: np.ndarray, degree: int) -> np.ndarray:
    """Complex basis matrix ``(n, (L+1)²)``; column ``l² + l + m`` = ``Y_l^m(θ, φ)`` (harmonics.py: a
    recurrence independent of the SciPy version, assembled one order m at a time)."""
    theta = np.asarray(theta, float)
    phi = np.asarray(phi, float)
    return spherical_harmonics(theta, phi, degree)  # SciPy-version independent (harmonics.py)


def evaluate_at(coefficients: np.ndarray, sphere: np.ndarray, degree: int) -> np.ndarray:
    """Surface points ``(n, 3)`` (real part) at unit vectors ``sphere`` from the coefficients truncated at
    ``degree``, without forming the basis matrix (a reconstruction at a new degree costs milliseconds)."""
    theta, phi = cartesian_to_angles(sphere)
    out = np.zeros((theta.size, 3), dtype=complex)
    c = np.asarray(coefficients)
    for m, p in legendre_by_order(np.cos(theta), np.sin(theta), degree):
        ls = np.arange(m, degree + 1)
        em = np.exp(1j * m * phi)[:, None]
        out += (p.T @ c[ls * ls + ls + m]) * em
        if m > 0:
            out += (-1.0) ** m * (p.T @ c[ls * ls + ls - m]) * np.conj(em)
    return out.real


def basis_from_sphere(sphere: np.ndarray, degree: int) -> np.ndarray:
    """:func:`basis` at unit vectors."""
    return basis(*cartesian_to_angles(sphere), degree)


@lru_cache(maxsize=32)
def complex_from_real(degree: int) -> np.ndarray:
    """Unitary T with ``R = Y T`` real: column (l, m>0) = √2 Re Y_l^m, (l, −m) = √2 Im Y_l^m, (l, 0) = Y_l^0."""
    k = n_coefficients(degree)
    t = np.zeros((k, k), dtype=complex)
    s = 1.0 / np.sqrt(2.0)
    for l in range(degree + 1):
        t[lm_index(l, 0), lm_index(l, 0)] = 1.0
        for m in range(1, l + 1):
            p, q = lm_index(l, m), lm_index(l, -m)
            sign = (-1.0) ** m
            # √2 Re Y_l^m = (Y_l^m + (−1)^m Y_l^{−m}) / √2
            t[p, p] = s
            t[q, p] = sign * s
            # √2 Im Y_l^m = (Y_l^m − (−1)^m Y_l^{−m}) / (√2 i)
            t[p, q] = -1j * s
            t[q, q] = 1j * sign * s
    t.setflags(write=False)
    return t


@lru_cache(maxsize=32)
def _real_columns(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ls, ms = degree_orders(degree)
    idx = np.arange(len(ls))
    pos = np.array([lm_index(l, abs(m)) for l, m in zip(ls, ms, strict=True)])
    return idx[ms == 0], idx[ms > 0], pos[ms < 0]


def real_basis(basis_matrix: np.ndarray, degree: int) -> np.ndarray:
    """Real basis ``(Y T).real`` from the complex one: column (l, m>0) √2 Re Y_l^m, (l, −m) √2 Im Y_l^m."""
    idx, scale = _real_gather(degree)
    y = np.ascontiguousarray(basis_matrix, dtype=complex)
    return y.view(float)[:, idx] * scale  # one gather from the interleaved (re, im) floats


@lru_cache(maxsize=32)
def _real_gather(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Float-view column and factor of each real basis column (see :func:`real_basis`)."""
    zero, positive, mirrored = _real_columns(degree)
    _, ms = degree_orders(degree)
    idx = np.empty(len(ms), dtype=np.intp)
    scale = np.empty(len(ms))
    idx[zero], scale[zero] = 2 * zero, 1.0
    idx[positive], scale[positive] = 2 * positive, np.sqrt(2.0)
    idx[ms < 0], scale[ms < 0] = 2 * mirrored + 1, np.sqrt(2.0)
    return idx, scale


def fit(
    sphere: np.ndarray,
    vertices: np.ndarray,
    degree: int = DEFAULT_DEGREE,
    *,
    regularization: float = 0.0,
    basis_matrix: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Least-squares SPHARM coefficients ``((L+1)², 3)`` complex of ``vertices`` (n, 3) at ``sphere`` (n, 3).

    Args:
        sphere: unit vectors, the parameterisation of each vertex.
        vertices: surface points (any length unit; the coefficients carry it).
        degree: maximum degree L.
        regularization: Tikhonov weight λ of the penalty ``λ·Σ l(l+1)|c_lm|²`` relative to the mean diagonal
            of the normal matrix (0 = plain least squares).
        basis_matrix: precomputed :func:`basis_from_sphere` ``(sphere, degree)`` (saves its evaluation).
        weights: optional non-negative weight per vertex (e.g. its surface area): minimises
            ``Σ_i w_i |v_i − v(s_i)|²``, a quadrature of the L² distance over the surface that does not depend on
            how densely the mesh samples each region. None = SPHARM-MAT's unweighted fit.
    """
    y = basis_from_sphere(sphere, degree) if basis_matrix is None else basis_matrix
    t = complex_from_real(degree)
    r = real_basis(y, degree)
    v = np.asarray(vertices, float)
    if weights is not None:
        sw = np.sqrt(np.asarray(weights, float) / np.mean(weights))
        r = r * sw[:, None]
        v = v * sw[:, None]
    if regularization > 0:
        ls, _ = degree_orders(degree)
        g = r.T @ r
        pen = regularization * float(np.mean(np.diag(g))) * (ls * (ls + 1.0))
        a = np.linalg.solve(g + np.diag(pen), r.T @ v)
    else:
        a = _least_squares(r, v)
    return t @ a


def _least_squares(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``argmin ‖r a − v‖``: Cholesky of the normal equations when ``r`` is well conditioned (the area-weighted
    basis of a good spherical map: ~5× faster than SVD), else ``numpy.linalg.lstsq`` (SVD)."""
    g = r.T @ r
    try:
        c = np.linalg.cholesky(g)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(r, v, rcond=None)[0]
    d = np.abs(np.diag(c))
    if d.min() <= 1e-5 * d.max():  # cond(r) ≳ 1e5: normal equations would lose too many digits
        return np.linalg.lstsq(r, v, rcond=None)[0]
    from scipy.linalg import cho_solve

    return cho_solve((c, True), r.T @ v)


@lru_cache(maxsize=16)
def _rotation_grid(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere points (642 for subdivision 3; 2562 above degree 15) and the pseudo-inverse of their basis."""
    grid = icosphere(3 if degree <= 15 else 4)[0]
    pinv = np.linalg.pinv(basis_from_sphere(grid, degree))
    pinv.setflags(write=False)
    return grid, pinv


def rotate_parameter(coefficients: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Coefficients of the same surface after rotating the parameter sphere by ``rotation`` (s ↦ Q s).

    The new expansion satisfies ``v'(Q s) = v(s)``: it is the Wigner-D rotation of every degree, obtained
    exactly by sampling ``v(Qᵀ g)`` on a fixed grid g and projecting with the cached pseudo-inverse (the
    function is band-limited to the same degree, so the projection is exact; the grid's basis matrix has
    condition number 1.13 at L = 15).
    """
    degree = round(np.sqrt(len(coefficients))) - 1
    grid, pinv = _rotation_grid(degree)
    values = basis_from_sphere(grid @ np.asarray(rotation, float), degree) @ coefficients  # v(Qᵀ g)
    return pinv @ values


def evaluate(coefficients: np.ndarray, basis_matrix: np.ndarray, degree: int | None = None) -> np.ndarray:
    """Surface points ``(n, 3)`` (real part) from coefficients truncated at ``degree`` (default: all)."""
    k = len(coefficients) if degree is None else n_coefficients(degree)
    return (basis_matrix[:, :k] @ coefficients[:k]).real


def reconstruction_errors(
    coefficients: np.ndarray,
    basis_matrix: np.ndarray,
    vertices: np.ndarray,
    max_degree: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Mean distance (units of ``vertices``) between each vertex and the reconstruction truncated at l.

    With ``weights`` (vertex areas) the mean is weighted: the average distance over the surface.

    Returns:
        array of length ``max_degree``; entry l−1 is the error at degree l (l = 1..max_degree). Degrees above
        the fitted degree repeat the error at the fitted degree.
    """
    fitted = round(np.sqrt(len(coefficients))) - 1
    w = np.ones(len(vertices)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    out = np.empty(max_degree)
    # cumulative sum over degrees: partial[l] = Σ_{l' ≤ l} Y c
    acc = np.zeros((basis_matrix.shape[0], 3))
    for l in range(0, min(fitted, max_degree) + 1):
        sl = slice(l * l, (l + 1) ** 2)
        acc = acc + (basis_matrix[:, sl] @ coefficients[sl]).real
        if l >= 1:
            out[l - 1] = float(w @ np.linalg.norm(acc - vertices, axis=1))
    for l in range(fitted + 1, max_degree + 1):
        out[l - 1] = out[fitted - 1] if fitted >= 1 else np.nan
    return out


# ------------------------------------------------------------------------------------------------------
# fixed icosphere for reconstructions
# ------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def icosphere(subdivisions: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: (vertices (10·4^k + 2, 3), faces (20·4^k, 3)) with outward-oriented faces."""
    p = (1.0 + 5**0.5) / 2.0
    v = np.array(
        [[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p],
         [0, -1, -p], [0, 1, -p], [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]],
        dtype=float,
    )  # fmt: skip
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int64,
    )  # fmt: skip
    vv = v / np.linalg.norm(v, axis=1, keepdims=True)
    faces = f
    for _ in range(subdivisions):
        # one midpoint per edge, numbered in order of first appearance (faces in order; edges ab, bc, ca)
        edges = np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1).reshape(-1, 2)
        keys = np.sort(edges, axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        mid_of_edge = len(vv) + rank[inverse.ravel()]
        firsts = np.sort(first)
        m = vv[edges[firsts, 0]] + vv[edges[firsts, 1]]
        vv = np.vstack([vv, m / np.linalg.norm(m, axis=1, keepdims=True)])
        ab, bc, ca = (mid_of_edge.reshape(-1, 3)[:, k] for k in range(3))
        a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
        faces = np.stack(
            [
                np.stack([a, ab, ca], 1),
                np.stack([b, bc, ab], 1),
                np.stack([c, ca, bc], 1),
                np.stack([ab, bc, ca], 1),
            ],
            axis=1,
        ).reshape(-1, 3)
    # orient outward
    d = np.einsum("ij,ij->i", vv[faces[:, 0]], np.cross(vv[faces[:, 1]], vv[faces[:, 2]]))
    faces = np.where((d < 0)[:, None], faces[:, ::-1], faces)
    vv.setflags(write=False)
    faces.setflags(write=False)
    return vv, faces


@lru_cache(maxsize=8)
def icosphere_basis(degree: int = DEFAULT_DEGREE, subdivisions: int = 4) -> np.ndarray:
    """Cached complex basis matrix on :func:`icosphere` vertices (read-only)."""
    y = basis_from_sphere(icosphere(subdivisions)[0], degree)
    y.setflags(write=False)
    return y
