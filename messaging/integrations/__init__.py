"""One-click connect flows (Meta "the diplomat", Tienda Nube) and their webhooks and jobs."""
