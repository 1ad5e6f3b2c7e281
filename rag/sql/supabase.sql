-- Knowledge-base vectors on Supabase (RAG_VECTOR_BACKEND=supabase). Run once in the SQL editor.
-- The dimension must match the embedder: 1536 for OpenAI text-embedding-3-small (the default
-- here), 768 for Google gemini-embedding-001 as configured in rag/embedders.py, 384 for `local`.
create extension if not exists vector;

create table if not exists documents (
  id bigserial primary key,
  content text not null,
  metadata jsonb not null default '{}'::jsonb,
  embedding vector(1536) not null
);

-- Tenant filter, delete by source, and the exact path for small tenants.
create index if not exists documents_tenant on documents ((metadata->>'tenant_id'));
create index if not exists documents_source on documents ((metadata->>'source_id'));
create index if not exists documents_embedding_hnsw on documents
  using hnsw (embedding vector_cosine_ops) with (m = 16, ef_construction = 64);

-- Tenant-filtered search that keeps its recall (measured in bench/rag_search.py):
-- exact search while the tenant has fewer than 2,500 rows, otherwise the HNSW index with
-- iterative scans (relaxed order) so the scan continues until match_count rows of the tenant.
create or replace function match_documents (
  query_embedding vector(1536),
  match_count int default 5,
  filter jsonb default '{}'::jsonb,
  collections text[] default null
) returns table (id bigint, content text, metadata jsonb, similarity float)
language plpgsql stable
set hnsw.iterative_scan = 'relaxed_order'
set hnsw.ef_search = 100
as $$
#variable_conflict use_column
declare
  tenant_rows int;
begin
  if filter->>'tenant_id' is null then
    raise exception 'match_documents needs filter.tenant_id';
  end if;
  -- Counting stops at the threshold, so this costs at most 2,500 index entries.
  select count(*) into tenant_rows from (
    select 1 from documents d where d.metadata->>'tenant_id' = filter->>'tenant_id' limit 2500
  ) small;
  if tenant_rows < 2500 then
    return query
      select d.id, d.content, d.metadata, 1 - (d.embedding <=> query_embedding) as similarity
      from documents d
      where d.metadata->>'tenant_id' = filter->>'tenant_id' and d.metadata @> filter
        and (collections is null or d.metadata->>'collection' = any(collections))
      order by (d.embedding <=> query_embedding) + 0
      limit match_count;
  else
    return query
      select r.id, r.content, r.metadata, r.similarity from (
        select d.id, d.content, d.metadata, 1 - (d.embedding <=> query_embedding) as similarity
        from documents d
        where d.metadata->>'tenant_id' = filter->>'tenant_id' and d.metadata @> filter
          and (collections is null or d.metadata->>'collection' = any(collections))
        order by d.embedding <=> query_embedding
        limit match_count
      ) r order by r.similarity desc;
  end if;
end;
$$;

-- What rag_reconcile compares with rag_documents.
create or replace function rag_list_sources ()
returns table (tenant_id int, source_id bigint, chunks bigint, models text[])
language sql stable
as $$
  select (metadata->>'tenant_id')::int, (metadata->>'source_id')::bigint, count(*),
         array_agg(distinct metadata->>'model')
  from documents group by 1, 2 order by 1, 2;
$$;

-- The service key bypasses row-level security; nobody else should read these rows.
alter table documents enable row level security;
