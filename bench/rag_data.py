"""Synthetic corpus for bench/rag_search.py: clustered unit vectors, Zipf-sized tenants that
share clusters (so a tenant filter matters), rows of a tenant scattered through the table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Corpus:
    tenant_ids: np.ndarray  # (n,) int32
    vectors: np.ndarray  # (n, dims) float32, unit length
    sizes: dict[int, int]
    tenant_clusters: dict[int, np.ndarray]
    centers: np.ndarray


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def zipf_sizes(total: int, tenants: int, exponent: float = 1.07, minimum: int = 100) -> list[int]:
    weights = 1.0 / np.arange(1, tenants + 1) ** exponent
    sizes = np.maximum(minimum, np.floor(weights / weights.sum() * total)).astype(int)
    sizes[0] += total - sizes.sum()  # the remainder goes to the largest tenant
    return sizes.tolist()


def make_corpus(total: int, tenants: int, dims: int, clusters: int, seed: int = 7, noise: float = 0.35) -> Corpus:
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((clusters, dims)))
    sizes = zipf_sizes(total, tenants)
    tenant_ids = np.empty(total, dtype=np.int32)
    vectors = np.empty((total, dims), dtype=np.float32)
    tenant_clusters, position = {}, 0
    for index, size in enumerate(sizes):
        tenant_id = index + 1
        # Bigger shops cover more topics; clusters are drawn from one pool, so tenants overlap.
        own = rng.choice(clusters, size=min(clusters, 5 + size // 400), replace=False)
        tenant_clusters[tenant_id] = own
        picks = rng.choice(own, size=size)
        block = centers[picks] + noise * rng.standard_normal((size, dims)).astype(np.float32) / np.sqrt(dims) * 4
        vectors[position : position + size] = _unit(block)
        tenant_ids[position : position + size] = tenant_id
        position += size
    order = rng.permutation(total)  # scatter every tenant's rows through the table
    return Corpus(tenant_ids[order], vectors[order], dict(enumerate(sizes, start=1)), tenant_clusters, centers)


def make_queries(corpus: Corpus, tenant_ids: list[int], count: int, seed: int = 11, noise: float = 0.35):
    """(tenant_id, query vector) pairs near one of the tenant's own clusters."""
    rng = np.random.default_rng(seed)
    dims = corpus.vectors.shape[1]
    queries = []
    for _ in range(count):
        tenant_id = int(rng.choice(tenant_ids))
        center = corpus.centers[rng.choice(corpus.tenant_clusters[tenant_id])]
        vector = center + noise * rng.standard_normal(dims).astype(np.float32) / np.sqrt(dims) * 4
        queries.append((tenant_id, (vector / np.linalg.norm(vector)).astype(np.float32)))
    return queries
