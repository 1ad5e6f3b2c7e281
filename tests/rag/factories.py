from rag.models import DocumentStatus, RAGDocument


def rag_document(tenant):
    # The file name is only recorded: isolation tests never read the file, so none is written.
    return RAGDocument.dangerously_unscoped.create(
        tenant=tenant, filename="policy.txt", file=f"rag/{tenant.pk}/policy.txt",
        content_hash=f"{tenant.pk:064d}", status=DocumentStatus.READY,
    )


ISOLATION_FACTORIES = {RAGDocument: rag_document}
