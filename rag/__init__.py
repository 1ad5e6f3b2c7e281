"""Knowledge base: documents in PostgreSQL (`rag_documents`), their vectors in pgvector (the
`vectors` alias) or Supabase, kept in sync, searched per tenant.

Rooms: models (RAGDocument), vectorstore/ (one interface, pgvector and supabase backends),
embedders (local | openai | google via the vault), extraction (txt md csv html pdf docx, WhatsApp
exports), ingestion (the dual-write pipeline), services (upload, re-ingest, dual delete, Shadow
RAG, drift repair), selectors (search, drift report), api, admin, tasks (procrastinate jobs on
queue "rag"), tools (`rag_search` for the agents' registry), checks, management commands
rag_ingest and rag_reconcile.

Tenant-filtered search (rag.vectorstore.pgvector) picks a plan per query from the tenant's row
count: exact search below RAG_EXACT_SEARCH_MAX_ROWS (1,000), the tenant's own partial HNSW index
from RAG_TENANT_INDEX_MIN_ROWS (1,000), the shared HNSW index with pgvector 0.8's iterative scan
(relaxed order, ef_search 100) in between. A plain HNSW scan filtered afterwards returns fewer
than k rows for a quarter to half of small tenants' queries; this keeps recall@10 >= 0.98 for
every tenant size. Measurements and the reasons for the thresholds: bench/README.md.
"""
