"""Loss-based membership-inference attack (MIA) for regression models.

Follows Tarun et al., "Deep Regression Unlearning" (ICML 2023): an RBF-kernel
SVM is trained to tell training-set members from non-members using only the
per-sample loss, then applied to the losses of a target set (usually the
forget set after unlearning). The fraction of target samples the attack calls
"member" is the MIA score: close to the retrain-from-scratch value means the
model no longer betrays that it was trained on the target set.

Everything here runs on the host with NumPy and scikit-learn. One attack per model: a
study's models are attacked in parallel threads (libsvm's fit releases the GIL), each
exactly as alone, so the result does not depend on the thread count. An ``AttackPool``
runs them in the background: a study starts every row's attacks, relearns its models on
the device meanwhile, then collects the rates.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from jaxunlearn.machine import cpu_cores

__all__ = ["WORKERS_ENV", "AttackPool", "PendingRates", "attack_workers", "mia_member_rate", "mia_member_rates"]

# How many models are attacked at once (default: the cores this process may use).
WORKERS_ENV = "JAXUNLEARN_ATTACK_WORKERS"

Gamma = str | float


def _as_losses(x, name: str) -> np.ndarray:
    """Validates one set of per-sample losses and returns it as float64 [N].

    Args:
        x: array-like of shape [N] or [N, 1].
        name: argument name used in error messages.

    Returns:
        float64 array of shape [N].
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape [N] or [N, 1], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN/inf value(s)")
    return arr


def mia_member_rate(
    member_losses,
    nonmember_losses,
    target_losses,
    *,
    n_train: int = 2000,
    seed: int = 0,
    C: float = 3.0,
    gamma: Gamma = "auto",
) -> float:
    """Fraction of target samples an RBF-SVC attack classifies as members.

    ``n = min(n_train, Nm, Nn)`` losses are drawn without replacement from
    each of the member and non-member sets (``numpy.random.default_rng(seed)``),
    an ``SVC(kernel="rbf", C=C, gamma=gamma)`` is fit on the [2n, 1] loss
    features (label 1 = member, 0 = non-member) and applied to every target.

    Args:
        member_losses: per-sample losses on training members, shape [Nm]
            (or [Nm, 1]).
        nonmember_losses: per-sample losses on unseen data, shape [Nn]
            (or [Nn, 1]).
        target_losses: per-sample losses to classify, shape [Nt] (or [Nt, 1]).
        n_train: maximum number of attack-training samples per class.
        seed: seed for the subsampling; the result is deterministic in it.
        C: SVC regularisation parameter.
        gamma: SVC RBF kernel coefficient ("auto", "scale" or a float).

    Returns:
        The member rate, a Python float in [0, 1].

    Raises:
        ValueError: on empty inputs, non-finite values, a bad shape, or if
            fewer than 2 samples per class are available for training.
    """
    members = _as_losses(member_losses, "member_losses")
    nonmembers = _as_losses(nonmember_losses, "nonmember_losses")
    target = _as_losses(target_losses, "target_losses")
    if int(n_train) < 2:
        raise ValueError(f"n_train must be >= 2, got {n_train}")
    n = min(int(n_train), members.size, nonmembers.size)
    if n < 2:
        raise ValueError(
            "need at least 2 samples per class to train the attack, got "
            f"n = min(n_train={n_train}, len(member_losses)={members.size}, "
            f"len(nonmember_losses)={nonmembers.size}) = {n}"
        )

    rng = np.random.default_rng(seed)
    m_idx = rng.choice(members.size, size=n, replace=False)
    n_idx = rng.choice(nonmembers.size, size=n, replace=False)
    features = np.concatenate([members[m_idx], nonmembers[n_idx]])[:, None]
    labels = np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])

    from sklearn.svm import SVC  # heavy import, only when the attack runs

    clf = SVC(kernel="rbf", C=C, gamma=gamma)
    clf.fit(features, labels)
    pred = clf.predict(target[:, None])
    return float(np.mean(pred == 1))


def attack_workers() -> int:
    """Threads the attacks of a study use: ``JAXUNLEARN_ATTACK_WORKERS`` if set, else the
    number of cores this process may run on."""
    given = os.environ.get(WORKERS_ENV)
    if given is not None:
        if not given.isdigit() or int(given) < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {given!r}")
        return int(given)
    return cpu_cores()


def mia_member_rates(
    member_losses,
    nonmember_losses,
    target_losses,
    *,
    n_train: int = 2000,
    seed: int = 0,
    C: float = 3.0,
    gamma: Gamma = "auto",
    workers: int | None = None,
) -> np.ndarray:
    """Runs :func:`mia_member_rate` once per seed of a multi-seed study.

    Row ``i`` uses attack seed ``seed + i``. The S attacks run in ``workers`` threads
    (default ``attack_workers()``); each is computed exactly as alone, so the rates are the
    same for any thread count.

    Args:
        member_losses: shape [S, Nm] (or [S, Nm, 1]).
        nonmember_losses: shape [S, Nn] (or [S, Nn, 1]).
        target_losses: shape [S, Nt] (or [S, Nt, 1]).
        n_train: maximum attack-training samples per class.
        seed: base seed.
        C: SVC regularisation parameter.
        gamma: SVC RBF kernel coefficient.

    Returns:
        float64 array of shape [S] with the member rate of each seed.

    Raises:
        ValueError: if the inputs are not batched over the same number of
            seeds, or on any per-seed validation error.
    """
    with AttackPool(workers) as pool:
        pending = pool.submit(
            member_losses, nonmember_losses, target_losses, n_train=n_train, seed=seed, C=C, gamma=gamma
        )
        return pending.result()


def _batched_losses(member_losses, nonmember_losses, target_losses) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three [S, N] (or [S, N, 1]) loss stacks as float64, checked to share S >= 1."""
    arrays = {
        "member_losses": np.asarray(member_losses, dtype=np.float64),
        "nonmember_losses": np.asarray(nonmember_losses, dtype=np.float64),
        "target_losses": np.asarray(target_losses, dtype=np.float64),
    }
    for name, arr in arrays.items():
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 1):
            raise ValueError(f"{name} must have shape [S, N] or [S, N, 1], got {arr.shape}")
    seeds = {arr.shape[0] for arr in arrays.values()}
    if len(seeds) != 1:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise ValueError(f"inputs disagree on the number of seeds S: {shapes}")
    if seeds == {0}:
        raise ValueError("member_losses is empty (S == 0)")
    m, nm, t = arrays.values()
    return m, nm, t


class PendingRates:
    """The member rates [S] of one batch of models, being computed by an ``AttackPool``.

    ``result()`` waits for them (and re-raises an attack's error); ``waited`` is the wall
    time ``result()`` spent waiting, the part of the attacks the caller did not hide
    behind other work.
    """

    def __init__(self, parts: list[Future | float]):
        self._parts = parts
        self.waited = 0.0

    def result(self) -> np.ndarray:
        started = time.perf_counter()
        rates = np.array([p.result() if isinstance(p, Future) else p for p in self._parts], dtype=np.float64)
        self.waited += time.perf_counter() - started
        return rates


class AttackPool:
    """Threads that attack models in the background (a context manager).

    ``submit`` checks the losses at once (a bad shape raises there) and queues one attack
    per model on the pool's shared threads, so the models of many rows keep every thread
    busy; each attack is computed exactly as alone (seed ``seed + i`` for model ``i``),
    so the rates do not depend on the thread count or on what else runs meanwhile. With
    one worker the attacks run at ``submit``, one after another.

    ``busy_seconds`` sums the attacks' own wall times (thread-seconds; the serial cost).

    >>> with AttackPool() as pool:                                      # doctest: +SKIP
    ...     pending = {row: pool.submit(m[row], n[row], t[row]) for row in rows}
    ...     other_work()                     # e.g. relearning on the device
    ...     rates = {row: p.result() for row, p in pending.items()}
    """

    def __init__(self, workers: int | None = None):
        self.workers = attack_workers() if workers is None else workers
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.busy_seconds = 0.0

    def __enter__(self) -> AttackPool:
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="svc-attack")
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
            self._pool = None

    def submit(
        self,
        member_losses,
        nonmember_losses,
        target_losses,
        *,
        n_train: int = 2000,
        seed: int = 0,
        C: float = 3.0,
        gamma: Gamma = "auto",
    ) -> PendingRates:
        """Queues :func:`mia_member_rate` for each of S models (arguments as in
        :func:`mia_member_rates`); returns their ``PendingRates``."""
        m, nm, t = _batched_losses(member_losses, nonmember_losses, target_losses)

        def attack(i: int) -> float:
            started = time.perf_counter()
            rate = mia_member_rate(m[i], nm[i], t[i], n_train=n_train, seed=seed + i, C=C, gamma=gamma)
            with self._lock:
                self.busy_seconds += time.perf_counter() - started
            return rate

        return PendingRates([self._run(attack, i) for i in range(m.shape[0])])

    def _run(self, attack: Callable[[int], float], i: int) -> Future | float:
        if self._pool is None:
            if self.workers > 1:
                raise RuntimeError("AttackPool.submit needs the pool open: use it in a with statement")
            return attack(i)
        return self._pool.submit(attack, i)
