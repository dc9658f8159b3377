"""Representations of a matrix group built from V: scalars, duals, direct sums, tensor products
(docs/method.md §8).

Every representation derives its generators from the group's: on a tensor product the Lie-algebra
action is the Kronecker sum drho_1(A) (x) I + I (x) drho_2(A) and a group element acts by the
Kronecker product rho_1(g) (x) rho_2(g); on a dual, drho*(A) = -drho(A)^T and rho*(g) = rho(g)^-T;
on a direct sum, block-diagonally.  Generators are sparse: on T(4) of O(5) (625 dimensions) each
has 1,000 non-zeros.

Layout (what a feature vector's coordinates mean): ``c * R`` is c consecutive copies of R
(coordinate ``copy * R.dim + i``), a sum ``R1 + R2`` puts R1 first, and ``R1 * R2`` has coordinate
``i * R2.dim + j`` (numpy's kron).  Text form, as configs write it: ``2V``, ``V+S``, ``V**2``,
``V*V.T``, ``T(2,1)``, ``3S+2V+V**2``; parsed by a small grammar, never evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, reduce
from itertools import groupby

import numpy as np
import scipy.sparse as sp

from softeq.matrix_groups import MatrixGroup, matrix_group

__all__ = ["Rep", "Scalar", "T", "V", "parse_rep"]


@dataclass(frozen=True, eq=False)
class Rep:
    """A representation of ``group``: ``kind`` is ``S`` (trivial), ``V`` (standard), ``dual``,
    ``tensor`` or ``sum``; ``parts`` holds (child, multiplicity) pairs (multiplicity 1 except in
    sums)."""

    group: MatrixGroup
    kind: str
    parts: tuple[tuple[Rep, int], ...] = ()

    # ---- algebra ---------------------------------------------------------------------------

    def __add__(self, other: Rep) -> Rep:
        self._same_group(other)
        return Rep(self.group, "sum", (*_summands(self), *_summands(other)))

    def __rmul__(self, count: int) -> Rep:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"a multiplicity must be a positive integer, got {count!r}")
        if count == 1:
            return self
        return Rep(self.group, "sum", tuple((rep, m * count) for rep, m in _summands(self)))

    def __mul__(self, other: Rep | int) -> Rep:
        if isinstance(other, int):
            return other * self
        self._same_group(other)
        factors = (*_factors(self), *_factors(other))
        if len(factors) <= 1:
            return factors[0][0] if factors else self
        return Rep(self.group, "tensor", factors)

    def __pow__(self, power: int) -> Rep:
        if not isinstance(power, int) or power < 0:
            raise ValueError(f"a tensor power must be a non-negative integer, got {power!r}")
        if power == 0:
            return Scalar(self.group)
        return reduce(lambda a, b: a * b, [self] * power)

    @property
    def T(self) -> Rep:
        """The dual representation rho*(g) = rho(g)^-T (pushed into sums and tensor products,
        so that only V is ever wrapped: (R1 + R2)* = R1* + R2*, (R1 (x) R2)* = R1* (x) R2*)."""
        if self.kind == "S":
            return self
        if self.kind == "V":
            return Rep(self.group, "dual", ((self, 1),))
        if self.kind == "dual":
            return self.parts[0][0]
        if self.kind == "sum":
            return Rep(self.group, "sum", tuple((rep.T, m) for rep, m in self.parts))
        return Rep(self.group, "tensor", tuple((rep.T, 1) for rep, _ in self.parts))

    def _same_group(self, other: Rep) -> None:
        if not isinstance(other, Rep) or other.group.name != self.group.name:
            raise ValueError("representations of different groups cannot be combined")

    # ---- description -----------------------------------------------------------------------

    @cached_property
    def dim(self) -> int:
        if self.kind == "S":
            return 1
        if self.kind == "V":
            return self.group.n
        if self.kind == "dual":
            return self.parts[0][0].dim
        if self.kind == "tensor":
            return int(np.prod([rep.dim for rep, _ in self.parts]))
        return sum(rep.dim * m for rep, m in self.parts)

    @cached_property
    def key(self) -> str:
        """Canonical text (``2V+V**2``, ``S``, ``V*V.T``): equal keys, equal representations."""
        if self.kind in ("S", "V"):
            return self.kind
        if self.kind == "dual":
            return "V.T"
        if self.kind == "tensor":
            keys = [_wrap(rep, rep.kind == "sum") for rep, _ in self.parts]
            runs = [(k, len(list(g))) for k, g in groupby(keys)]
            return "*".join(k if n == 1 else f"{k}**{n}" for k, n in runs)
        return "+".join(rep.key if m == 1 else f"{m}{_wrap(rep, False)}" for rep, m in self.parts)

    @property
    def is_scalar(self) -> bool:
        """The trivial one-dimensional representation."""
        return self.kind == "S"

    def blocks(self) -> list[tuple[Rep, int]]:
        """(type, multiplicity) pairs in layout order; a type is never a sum."""
        return list(_summands(self))

    def __repr__(self) -> str:
        return f"Rep({self.key} of {self.group.name}, dim {self.dim})"

    # ---- actions ---------------------------------------------------------------------------

    def lie(self) -> list[sp.csr_matrix]:
        """drho(A_i) for every Lie-algebra generator of the group."""
        return [self._lie(a) for a in self.group.lie_algebra]

    def discrete(self) -> list[sp.csr_matrix]:
        """rho(h_j) for every discrete generator of the group."""
        return [sp.csr_matrix(self.rho(h)) for h in self.group.discrete]

    def _lie(self, a: np.ndarray) -> sp.csr_matrix:
        if self.kind == "S":
            return sp.csr_matrix((1, 1))
        if self.kind == "V":
            return sp.csr_matrix(a)
        if self.kind == "dual":
            return (-self.parts[0][0]._lie(a).T).tocsr()
        if self.kind == "tensor":
            out, size = None, 1
            for rep, _ in self.parts:
                d = rep._lie(a)
                out = (
                    d
                    if out is None
                    else sp.kron(out, sp.identity(rep.dim)) + sp.kron(sp.identity(size), d)
                )
                size *= rep.dim
            return sp.csr_matrix(out)
        return sp.block_diag([rep._lie(a) for rep, m in self.parts for _ in range(m)], "csr")

    def rho(self, g: np.ndarray) -> np.ndarray:
        """Dense rho(g) for a group element given on V (an n x n matrix)."""
        g = np.asarray(g, dtype=np.float64)
        if self.kind == "S":
            return np.ones((1, 1))
        if self.kind == "V":
            return g
        if self.kind == "dual":
            return np.linalg.inv(self.parts[0][0].rho(g)).T
        if self.kind == "tensor":
            return reduce(np.kron, [rep.rho(g) for rep, _ in self.parts])
        mats = [rep.rho(g) for rep, m in self.parts for _ in range(m)]
        return sp.block_diag(mats).toarray()


def _summands(rep: Rep) -> tuple[tuple[Rep, int], ...]:
    return rep.parts if rep.kind == "sum" else ((rep, 1),)


def _factors(rep: Rep) -> tuple[tuple[Rep, int], ...]:
    if rep.kind == "S":
        return ()
    return rep.parts if rep.kind == "tensor" else ((rep, 1),)


def _wrap(rep: Rep, parens: bool) -> str:
    return f"({rep.key})" if parens or rep.kind == "sum" else rep.key


def V(group: MatrixGroup | str) -> Rep:
    """The standard representation: g acts on R^n as the matrix g."""
    return Rep(matrix_group(group), "V")


def Scalar(group: MatrixGroup | str) -> Rep:
    """The trivial representation on R."""
    return Rep(matrix_group(group), "S")


def T(group: MatrixGroup | str, p: int, q: int = 0) -> Rep:
    """Tensors of type (p, q): V^(x)p (x) (V*)^(x)q."""
    group = matrix_group(group)
    if p < 0 or q < 0:
        raise ValueError(f"T(p, q) needs p, q >= 0, got ({p}, {q})")
    rep = V(group) ** p
    dual = V(group).T ** q
    return dual if p == 0 else (rep if q == 0 else rep * dual)


# ---- text form -------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|(\*\*)|(\.T)|(T\(\s*\d+\s*(?:,\s*\d+\s*)?\))|([VS+*()]))")


def _tokens(text: str) -> list[str]:
    tokens, at = [], 0
    text = text.rstrip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise ValueError(f"representation {text!r}: cannot read {text[at:]!r}")
        tokens.append(next(g for g in match.groups() if g is not None).replace(" ", ""))
        at = match.end()
    return tokens


class _Parser:
    """expr := term ('+' term)*;  term := [INT ['*']] factor ('*' factor)*;
    factor := atom ('**' INT | '.T')*;  atom := V | S | T(p[,q]) | '(' expr ')'."""

    def __init__(self, text: str, group: MatrixGroup) -> None:
        self.text, self.group, self.tokens, self.at = text, group, _tokens(text), 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"representation {self.text!r}: {what} (grammar: docs/method.md §8)")

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end")
        self.at += 1
        return token

    def parse(self) -> Rep:
        if not self.tokens:
            raise self.fail("empty")
        rep = self.expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()!r}")
        return rep

    def expr(self) -> Rep:
        rep = self.term()
        while self.peek() == "+":
            self.take()
            rep = rep + self.term()
        return rep

    def term(self) -> Rep:
        count = 1
        if self.peek() is not None and self.peek().isdigit():
            count = int(self.take())
            if count < 1:
                raise self.fail("a multiplicity must be at least 1")
            if self.peek() == "*":
                self.take()
        rep = self.factor()
        while self.peek() == "*":
            self.take()
            rep = rep * self.factor()
        return count * rep

    def factor(self) -> Rep:
        rep = self.atom()
        while self.peek() in ("**", ".T"):
            if self.take() == ".T":
                rep = rep.T
                continue
            power = self.take()
            if not power.isdigit():
                raise self.fail(f"'**' needs an integer, got {power!r}")
            rep = rep ** int(power)
        return rep

    def atom(self) -> Rep:
        token = self.take()
        if token == "V":
            return V(self.group)
        if token == "S":
            return Scalar(self.group)
        if token.startswith("T("):
            numbers = [int(v) for v in re.findall(r"\d+", token)]
            return T(self.group, *numbers)
        if token == "(":
            rep = self.expr()
            if self.take() != ")":
                raise self.fail("missing ')'")
            return rep
        raise self.fail(f"unexpected {token!r}")


def parse_rep(text: str | Rep, group: MatrixGroup | str) -> Rep:
    """The representation a text names (``2V``, ``V**2``, ``T(2,1)``, ``3S+2V``); errors name it."""
    group = matrix_group(group)
    if isinstance(text, Rep):
        if text.group.name != group.name:
            raise ValueError(f"representation {text.key} belongs to {text.group.name}, not {group}")
        return text
    if not isinstance(text, str):
        raise ValueError(f"a representation is a text like '2V' or 'V**2', got {text!r}")
    return _Parser(text, group).parse()
